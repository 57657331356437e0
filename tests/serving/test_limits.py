"""The server under the loads operations worry about, on 127.0.0.1 with real images: a
request of huge images (the pixel budget), stalled and slow uploads (the connection limit and
the read deadline), bodies over the limit of any size, and the logs."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import socket
import time

import pytest
from PIL import Image

from bincount import inference
from bincount.serving import accesslog
from bincount.settings import settings

SIDE = 6000


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A 6000x6000 PNG: mostly uniform, so it compresses to about 100 KB."""
    im = Image.new("RGB", (SIDE, SIDE), (120, 110, 100))
    im.paste((20, 200, 30), (SIDE // 4, SIDE // 4, SIDE // 2, SIDE // 2))
    out = io.BytesIO()
    im.save(out, "PNG", compress_level=9)
    return out.getvalue()


@pytest.fixture
def access(caplog):
    """The access lines logged so far, as their fields."""
    caplog.set_level(logging.INFO, logger="bincount.access")
    return lambda: [r.fields for r in caplog.records if r.name == "bincount.access"]


def test_32_huge_pngs_are_refused_by_the_budget_before_decoding(server, huge_png, access):
    body = json.dumps({"images": [base64.b64encode(huge_png).decode()] * 32}).encode()
    assert len(body) < settings()["limits"]["max_body_bytes"]
    status, answer = server.post(body, "application/json")
    assert status == 413, answer
    assert "max_request_pixels" in answer["error"] and str(32 * SIDE * SIDE) in answer["error"]
    (line,) = [f for f in access() if f["path"] == "/invocations"]
    assert line["status"] == 413 and "max_request_pixels" in line["error"]


def test_one_huge_png_within_the_budget_is_counted(server, huge_png, torch_model, access):
    status, answer = server.post(huge_png, "image/png")
    assert status == 200 and answer["count"] in torch_model.counts
    # decoded, then shrunk at once: the letterbox sees a small image
    im = inference.decode_image(huge_png, torch_model.preprocess["image_size"])
    assert SIDE // 4 > min(im.size) >= 2 * torch_model.preprocess["image_size"]
    assert [f["count"] for f in access() if f["path"] == "/invocations"] == [answer["count"]]


def stalled_upload(port: int) -> socket.socket:
    """A connection that sent its headers and 100 bytes of a 1 MB body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 1000000\r\n\r\n" + b"\xff" * 100
    )
    return sock


def test_150_stalled_uploads_leave_ping_answering(server):
    socks = [stalled_upload(server.port) for _ in range(150)]
    try:
        deadline = time.monotonic() + 10  # until the server holds them all (or stops taking)
        while len(server.httpd.active_channels) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1.0)
        conn.request("GET", "/ping")
        response = conn.getresponse()  # within the 1 s timeout, or socket.timeout
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"
        conn.close()
    finally:
        for s in socks:
            s.close()


def test_a_stalled_body_is_cut_at_the_idle_timeout(new_server, access):
    s = new_server()
    s.httpd.adj.channel_timeout = 1
    sock = stalled_upload(s.port)
    try:
        sock.settimeout(20)
        assert sock.recv(100) == b""  # closed by the server
        (line,) = [f for f in access() if f["status"] == 408]
        assert "idle_timeout" in line["error"] and line["path"] == "/invocations"
    finally:
        sock.close()


def test_a_trickling_body_is_cut_at_the_read_deadline(new_server, access):
    s = new_server()
    s.httpd.read_deadline = 1.0
    sock = stalled_upload(s.port)
    try:
        closed = False
        for _ in range(40):  # a byte every 0.25 s: never idle, always late
            try:
                sock.sendall(b"\xff")
                sock.settimeout(0.25)
                closed = sock.recv(100) == b""
            except TimeoutError:
                continue
            except OSError:  # reset by the server
                closed = True
            if closed:
                break
        assert closed
        (line,) = [f for f in access() if f["status"] == 408]
        assert "read_deadline" in line["error"] and line["path"] == "/invocations"
    finally:
        sock.close()


def test_a_body_over_the_limit_is_a_json_413_whatever_its_size(server, access):
    limit = settings()["limits"]["max_body_bytes"]
    status, answer = server.post(b"\xff" * (2 * limit + 5_000_000), "image/jpeg")  # all sent
    assert status == 413 and "limits.max_body_bytes" in answer["error"]
    # a declared 10 GB body: answered from the headers, while the client still sends
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/invocations?expected=3")
    conn.putheader("Content-Type", "image/jpeg")
    conn.putheader("Content-Length", str(10**10))
    conn.endheaders(b"\xff" * 1000)
    response = conn.getresponse()
    assert response.status == 413 and response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read())["error"] == answer["error"]
    conn.close()
    # a client that asks first (Expect: 100-continue, as curl does) gets the 413 at once
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 30000000\r\nExpect: 100-continue\r\n\r\n"
        )
        head, _, body = sock.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"100 Continue" not in head
    assert json.loads(body)["error"] == answer["error"]
    lines = access()
    assert [f["status"] for f in lines] == [413, 413, 413]
    # the declared 10 GB body's line keeps its query; the lines of the last two requests can be
    # written in either order (each when its connection is done with)
    queried = [f for f in lines if f["path"] == "/invocations?expected=3"]
    assert len(queried) == 1 and queried[0]["error"] == answer["error"]


def test_log_lines_as_json_and_the_queue_warning_rate_limited():
    record = logging.makeLogRecord(
        {"name": "bincount.access", "msg": "x", "levelname": "INFO", "created": 0.0}
    )
    record.fields = {"method": "POST", "path": "/invocations", "status": 200, "ms": 3.5}
    doc = json.loads(accesslog.JsonFormatter().format(record))
    assert doc["time"] == "1970-01-01T00:00:00.000Z" and doc["status"] == 200
    assert doc["path"] == "/invocations" and doc["logger"] == "bincount.access"
    limit = accesslog.EverySeconds(60)
    records = [
        logging.makeLogRecord({"msg": "Task queue depth is %d", "args": (i,)}) for i in range(5)
    ]
    assert [limit.filter(r) for r in records] == [True, False, False, False, False]
    limit.last -= 61
    assert limit.filter(records[0]) and "4 such warnings dropped" in records[0].getMessage()
