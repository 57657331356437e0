"""Hostile and careless request bodies, through the real server on 127.0.0.1 and `input_fn`: JSON
nested 5,000 deep, a 5,000-digit or NaN `expected` (400s, not 500s), `?expected=` against a
per-image `expected`, base64 with line breaks, every image type the server decodes by its own
content type (and `image/*`), a 0-byte image and a TIFF, EXIF orientation (a photo rotated by its
tag counts as the same photo rotated in its pixels: torch, ONNX and the server), and checkpoints
that are not this network's."""

from __future__ import annotations

import base64
import io
import json
import urllib.parse

import numpy as np
import pytest
import torch
from PIL import Image

from bincount import inference, jsonsafe
from bincount.errors import BincountError


def one_line(message: str) -> bool:
    return "\n" not in message and " 0x" not in message and "send it again" not in message


def as_format(photo: bytes, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    im = Image.open(io.BytesIO(photo))
    (im.convert("P") if fmt == "GIF" else im).save(out, fmt, **save)
    return out.getvalue()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 5000 + b"]" * 5000, "nests 5000 levels deep"),
        (b'{"images": ' + b"[" * 40 + b"]" * 40 + b"}", "nests 41 levels deep"),
        (b'{"image": "AAAA", "expected": ' + b"9" * 5000 + b"}", "5000 characters"),
        (b'{"image": "AAAA", "expected": NaN}', "NaN is not a number"),
        (b'{"image": "AAAA", "expected": 1e999}', "out of range"),
        (b'{"image": "AAAA", "expected": -Infinity}', "-Infinity is not a number"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_json_too_deep_or_with_wild_numbers_is_a_400(server, body, words):
    status, answer = server.post(body, "application/json")
    assert status == 400 and words in answer["error"], answer
    assert one_line(answer["error"])
    assert server.request("GET", "/ping")[0] == 200


@pytest.mark.parametrize(
    ("expected", "words"),
    [
        ("9" * 5000, "too large"),
        ("2.5", "is not a count"),
        ("-3", "is not a count"),
        ("1" + "0" * 9, "too large"),
        ("٣", "is not a count"),  # an Arabic-Indic 3: int() reads it, a count does not
    ],
)
def test_a_bad_expected_in_the_query_is_a_400(server, photo, expected, words):
    path = f"/invocations?expected={urllib.parse.quote(expected)}"
    status, answer = server.post(photo, "image/jpeg", path)
    assert status == 400 and words in answer["error"] and len(answer["error"]) < 200


def test_the_query_expected_never_overrides_the_body_silently(server, photo):
    b64 = base64.b64encode(photo).decode()
    body = json.dumps({"image": b64, "expected": 2}).encode()
    status, answer = server.post(body, "application/json", "/invocations?expected=3")
    assert status == 400 and "disagree" in answer["error"] and "image.expected=2" in answer["error"]
    status, answer = server.post(body, "application/json", "/invocations?expected=2")
    assert status == 200 and answer["expected"] == 2
    batch = json.dumps({"images": [b64, {"image": b64, "expected": 1}]}).encode()
    status, answer = server.post(
        batch,
        "application/json",
        "/invocations",
        **{"X-Amzn-SageMaker-Custom-Attributes": "expected=3"},
    )
    assert status == 400 and "images[1].expected=1" in answer["error"]


def test_base64_with_line_breaks_as_the_base64_tool_prints_it(server, photo):
    wrapped = base64.encodebytes(photo).decode()  # 76 characters a line, as `base64` does
    assert "\n" in wrapped
    status, answer = server.post(json.dumps({"image": wrapped}).encode(), "application/json")
    assert status == 200
    assert answer == server.post(photo, "image/jpeg")[1]
    spaced = " \r\n".join(wrapped.split("\n"))
    assert server.post(json.dumps({"images": [spaced]}).encode(), "application/json")[0] == 200


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
        ("TIFF", "image/tiff"),
        ("PNG", "image/x-anything"),  # any other image/*: the format is read from the bytes
        ("JPEG", "image/jpg"),
    ],
)
def test_every_image_type_the_server_decodes_is_taken_by_its_content_type(
    server, photo, torch_model, fmt, content_type
):
    data = as_format(photo, fmt)
    status, answer = server.post(data, content_type)
    assert status == 200, answer
    assert answer["count"] in torch_model.counts


def test_a_type_that_is_no_image_is_still_a_415(server, photo):
    status, answer = server.post(photo, "text/plain")
    assert status == 415 and "image/*" in answer["error"]


def test_0_byte_and_broken_images_get_a_true_short_line(server, photo):
    status, answer = server.post(b"", "image/png")
    assert status == 400 and answer["error"].startswith("the body is empty (0 bytes)")
    for what in (b"", photo[:50], b"GIF89a" + b"\x00" * 20):
        with pytest.raises(inference.InputError) as e:
            inference.decode_image(what, 224, "x.jpg")
        assert one_line(str(e.value)) and str(e.value).startswith("x.jpg "), e.value
        assert "BytesIO" not in str(e.value)


def rotated_by_tag(photo: bytes, fmt: str) -> tuple[bytes, bytes]:
    """(the photo upright, the same photo stored turned 90 degrees with EXIF orientation 6)."""
    upright = Image.open(io.BytesIO(photo)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show it"
    a, b = io.BytesIO(), io.BytesIO()
    upright.save(a, fmt)
    upright.transpose(Image.Transpose.ROTATE_90).save(b, fmt, exif=exif.tobytes())
    return a.getvalue(), b.getvalue()


def test_exif_orientation_is_applied_before_the_model_sees_the_photo(
    server, torch_model, onnx_model, photo
):
    upright, tagged = rotated_by_tag(photo, "PNG")  # lossless: the same pixels once upright
    size = torch_model.preprocess["image_size"]
    a, b = inference.decode_image(upright, size), inference.decode_image(tagged, size)
    assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))
    for model in (torch_model, onnx_model):
        answers = [
            inference.predict_fn(inference.input_fn(x, "image/png"), model)["probabilities"]
            for x in (upright, tagged)
        ]
        assert answers[0] == answers[1]
    upright, tagged = rotated_by_tag(photo, "JPEG")  # as a phone stores it
    _, p_upright = server.post(upright, "image/jpeg")
    _, p_tagged = server.post(tagged, "image/jpeg")
    for c in p_upright["probabilities"]:  # JPEG blocks differ once turned: close, not equal
        assert abs(p_upright["probabilities"][c] - p_tagged["probabilities"][c]) < 0.03


def test_jsonsafe_reads_what_json_reads_within_the_bounds():
    assert jsonsafe.loads(b'{"a": [1, 2.5, "[[[{", null, true]}') == {
        "a": [1, 2.5, "[[[{", None, True]
    }
    assert jsonsafe.depth(b'[[["]]]]]]"]]]') == 3
    with pytest.raises(BincountError, match="nests 33 levels"):
        jsonsafe.loads("[" * 33 + "]" * 33)
    assert jsonsafe.loads("[" * 32 + "]" * 32) is not None
    assert np.isnan(jsonsafe.loads('{"w": NaN}', nan=True)["w"])


@pytest.fixture(scope="module")
def ckpt_blob(served_run):
    return torch.load(
        served_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False
    )


def test_a_checkpoint_of_another_network_is_one_short_true_line(ckpt_blob, tmp_path):
    other = dict(ckpt_blob)
    hparams = ckpt_blob["hyper_parameters"]
    other["hyper_parameters"] = {**hparams, "net": {**hparams["net"], "backbone": "resnet18"}}
    path = tmp_path / "other.ckpt"
    torch.save(other, path)
    with pytest.raises(BincountError) as e:
        inference.load_net(path)
    message = str(e.value)
    assert "weights of another network" in message and "resnet18" in message, message
    assert one_line(message) and len(message) < 400
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(BincountError, match="not a bincount checkpoint"):
        inference.load_net(tmp_path / "plain.pt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "other.ckpt").read_bytes()[:5000])
    with pytest.raises(BincountError, match="is not a checkpoint that loads") as e:
        inference.load_net(tmp_path / "cut.ckpt")
    assert one_line(str(e.value)) and len(str(e.value)) < 400
