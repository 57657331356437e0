"""The real server on 127.0.0.1: the container contract, the page, and every bad input answered
with a 4xx JSON error while the server keeps serving."""

from __future__ import annotations

import base64
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from bincount import inference
from bincount.settings import settings


def test_ping_names_the_model(server, torch_model):
    status, body = server.request("GET", "/ping")
    assert status == 200 and body["status"] == "ok"
    assert body["model"]["version"] == torch_model.info["version"]


def test_invocation_of_a_real_photo(server, torch_model, photo):
    status, answer = server.post(photo, "image/jpeg")
    assert status == 200
    local = inference.predict_fn(inference.input_fn(photo, "image/jpeg"), torch_model)
    assert answer == json.loads(json.dumps(local))
    assert answer["count"] in torch_model.counts
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert "verdict" not in answer


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/invocations?expected=3", {}),
        ("/invocations", {"X-Amzn-SageMaker-Custom-Attributes": "expected=3"}),
    ],
)
def test_expected_quantity_adds_a_verdict(server, torch_model, photo, path, headers):
    status, answer = server.post(photo, "image/jpeg", path, **headers)
    assert status == 200
    assert answer["expected"] == 3
    assert answer["p_expected"] == answer["probabilities"]["3"]
    t = torch_model.thresholds
    p = answer["p_expected"]
    want = "mismatch" if p < t["mismatch_below"] else "match" if p >= t["match_at_least"] else None
    assert answer["verdict"] == (want or "unsure")


def test_json_list(server, photo, abid):
    other = (abid / "bin-images" / "00038.jpg").read_bytes()
    body = json.dumps(
        {"images": [base64.b64encode(b).decode() for b in (photo, other)], "expected": [3, 1]}
    ).encode()
    status, answer = server.post(body, "application/json")
    assert status == 200
    assert [a["expected"] for a in answer["predictions"]] == [3, 1]


def test_concurrent_requests_all_answered(server, photos):
    bodies = [p.read_bytes() for p in photos]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: server.post(b, "image/jpeg"), bodies))
    assert [s for s, _ in results] == [200] * len(bodies)


def bad_requests(photo: bytes, make_bomb) -> dict:
    b64 = base64.b64encode(photo).decode()
    return {
        "empty body": (b"", "image/jpeg", {}, 400, "empty"),
        "not an image": (b"%PDF-1.4 not a photo", "image/jpeg", {}, 400, "not an image"),
        "truncated JPEG": (photo[: len(photo) // 3], "image/jpeg", {}, 400, "truncated"),
        "unsupported type": (photo, "text/plain", {}, 415, "not supported"),
        "decompression bomb": (make_bomb(30000), "image/jpeg", {}, 413, "max_pixels"),
        "huge dimensions": (make_bomb(8000), "image/jpeg", {}, 413, "8000x8000"),
        "malformed JSON": (b'{"image": "abc', "application/json", {}, 400, "not valid JSON"),
        "bad expected": (
            json.dumps({"image": b64, "expected": -1}).encode(),
            "application/json",
            {},
            400,
            "not a count",
        ),
        "bad ?expected": (
            photo,
            "image/jpeg",
            {"path": "/invocations?expected=x"},
            400,
            "whole number",
        ),
        "unacceptable Accept": (photo, "image/jpeg", {"Accept": "text/csv"}, 406, "accept"),
        "body over the limit": (
            b"\xff" * (settings()["limits"]["max_body_bytes"] + 10),
            "image/jpeg",
            {},
            413,
            "max_body_bytes",
        ),
    }


def test_every_bad_input_gets_a_json_4xx_and_the_server_keeps_serving(
    server, photo, make_bomb, caplog
):
    caplog.set_level(logging.INFO, logger="bincount.access")
    sent = []
    for case, (body, ctype, extra, status, words) in bad_requests(photo, make_bomb).items():
        headers = {k: v for k, v in extra.items() if k != "path"}
        got, answer = server.post(body, ctype, extra.get("path", "/invocations"), **headers)
        assert (got, words in answer.get("error", "")) == (status, True), (case, answer)
        assert server.request("GET", "/ping")[0] == 200, case
        sent += [(extra.get("path", "/invocations"), status, answer["error"]), ("/ping", 200, None)]
    status, answer = server.post(photo, "image/jpeg")
    assert status == 200 and "count" in answer
    sent.append(("/invocations", 200, None))
    # one access line per request, in order, with the error the client got
    lines = [r.fields for r in caplog.records if r.name == "bincount.access"]
    assert [(f["path"], f["status"], f.get("error")) for f in lines] == sent
    assert lines[-1]["count"] == answer["count"] and all(f["ms"] >= 0 for f in lines)


def test_unknown_routes_and_methods_are_json(server):
    assert server.request("GET", "/nothing-here")[0] == 404
    status, body = server.request("GET", "/invocations")
    assert status == 405 and "error" in body


def test_page_is_served(server):
    status, page = server.request("GET", "/")
    assert status == 200
    assert "invocations" in page and 'type="file"' in page and 'id="expected"' in page


def test_onnx_server_agrees_with_torch(server, onnx_server, photos):
    for path in photos[:4]:
        body = path.read_bytes()
        a = server.post(body, "image/jpeg", "/invocations?expected=2")[1]
        b = onnx_server.post(body, "image/jpeg", "/invocations?expected=2")[1]
        assert b["model"]["backend"] == "onnx" and b["model"]["version"] == a["model"]["version"]
        diff = max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"])
        assert diff < 1e-4
        assert a["count"] == b["count"]
