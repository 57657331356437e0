"""The serving contract on real photos: model_fn loads what training wrote, input_fn takes every
accepted form and refuses bad input with a 4xx status, predict_fn answers like training's
evaluation, output_fn speaks JSON."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bincount import inference
from bincount.data import transforms
from bincount.errors import BincountError


def png_bytes(photo: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buf, format="PNG")
    return buf.getvalue()


def test_model_fn_reads_run_folder_and_checkpoint_alike(served_run, torch_model):
    ckpt = served_run / "checkpoints" / "best.ckpt"
    direct = inference.model_fn(ckpt)
    assert direct.info["version"] == torch_model.info["version"]
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert torch_model.preprocess == dict(saved["preprocess"])
    assert torch_model.counts == list(saved["net"]["counts"])
    assert torch_model.transform.transforms[0].size == saved["preprocess"]["image_size"]
    assert torch_model.info["calibrated"] and torch_model.temperature > 0


def test_predict_equals_the_checkpoints_own_evaluation(served_run, torch_model, photo):
    """The answer is softmax(net(eval transform(photo)) / T), with the checkpoint's transform."""
    module = inference.load_net(served_run / "checkpoints" / "best.ckpt")
    pre = module.preprocess
    x = transforms.build(pre, train=False)(transforms.open_rgb(photo, pre["image_size"]))
    with torch.inference_mode():
        logits = module(x[None]).double() / torch_model.temperature
    expected = torch.softmax(logits, 1)[0].numpy()
    answer = inference.predict_fn(inference.input_fn(photo, "image/jpeg"), torch_model)
    got = np.array([answer["probabilities"][str(c)] for c in torch_model.counts])
    assert np.abs(got - expected).max() < 1e-5
    assert answer["count"] == torch_model.counts[int(expected.argmax())]
    assert answer["confidence"] == pytest.approx(expected.max(), abs=1e-6)
    assert answer["mean_count"] == pytest.approx(float(expected @ torch_model.counts), abs=1e-4)
    assert answer["model"]["version"] == torch_model.info["version"]


def test_every_accepted_form_gives_the_same_answer(torch_model, photo):
    b64 = base64.b64encode(photo).decode()
    forms = [
        (photo, "image/jpeg"),
        (photo, "application/x-image"),
        (photo, "image/jpeg; charset=binary"),
        (json.dumps({"image": b64}), "application/json"),
        (json.dumps({"image": "data:image/jpeg;base64," + b64}), "application/json"),
    ]
    answers = [inference.predict_fn(inference.input_fn(b, t), torch_model) for b, t in forms]
    assert all(a["probabilities"] == answers[0]["probabilities"] for a in answers)
    # PNG decodes without JPEG's draft scaling: the same count space, valid probabilities
    png = inference.predict_fn(inference.input_fn(png_bytes(photo), "image/png"), torch_model)
    assert sum(png["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_json_list_with_expected_per_image(torch_model, photo, abid):
    other = (abid / "bin-images" / "00037.jpg").read_bytes()
    body = {
        "images": [
            {"image": base64.b64encode(photo).decode(), "expected": 3},
            base64.b64encode(other).decode(),
        ]
    }
    request = inference.input_fn(json.dumps(body).encode(), "application/json")
    assert request.expected == [3, None] and request.batch
    out = json.loads(inference.output_fn(inference.predict_fn(request, torch_model), None))
    first, second = out["predictions"]
    assert first["expected"] == 3 and first["verdict"] in ("match", "mismatch", "unsure")
    assert "verdict" not in second
    assert out["model"]["backend"] == "torch"


def test_verdict_outside_the_known_counts_is_unsure(torch_model, photo):
    request = inference.with_expected(inference.input_fn(photo, "image/jpeg"), 12)
    answer = inference.predict_fn(request, torch_model)
    assert answer["verdict"] == "unsure" and "only knows the counts" in answer["reason"]


BAD = {
    "empty body": (b"", "image/jpeg", 400, "empty"),
    "not an image": (b"hello, I am text", "image/jpeg", 400, "not an image"),
    "unsupported type": (b"abc", "text/plain", 415, "not supported"),
    "no content type": (b"abc", None, 415, "not supported"),
    "malformed JSON": (b'{"image": ', "application/json", 400, "not valid JSON"),
    "JSON not an object": (b"[1, 2]", "application/json", 400, "not an object"),
    "JSON without image": (b'{"picture": "x"}', "application/json", 400, "no 'image'"),
    "bad base64": (b'{"image": "***"}', "application/json", 400, "base64"),
    "empty JSON body": (b"", "application/json", 400, "empty"),
    "expected not a number": (None, "application/json", 400, "whole number"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_a_reason(case, photo):
    body, content_type, status, words = BAD[case]
    if body is None:
        body = json.dumps({"image": base64.b64encode(photo).decode(), "expected": "three"})
    with pytest.raises(inference.InputError) as err:
        inference.input_fn(body, content_type)
    assert err.value.status == status
    assert words in str(err.value)


@pytest.mark.parametrize("side", [8000, 30000])
def test_decompression_bomb_is_refused_before_decoding(make_bomb, side):
    """A real JPEG claiming side x side pixels: above limits.max_pixels (8000: 64 Mpx) and
    above PIL's own hard limit (30000: 900 Mpx); refused from the header, never decoded."""
    bomb = make_bomb(side)
    with pytest.raises(inference.InputError) as err:
        inference.input_fn(bomb, "image/jpeg")
    assert err.value.status == 413 and "limits.max_pixels" in str(err.value)


def test_truncated_jpeg_is_refused_when_decoded(torch_model, photo):
    request = inference.input_fn(photo[: len(photo) // 2], "image/jpeg")  # the header is fine
    with pytest.raises(inference.InputError) as err:
        inference.predict_fn(request, torch_model)
    assert err.value.status == 400 and "truncated" in str(err.value)


def test_output_fn_refuses_what_it_cannot_write():
    assert json.loads(inference.output_fn({"count": 3}, "application/json")) == {"count": 3}
    assert inference.output_fn({"count": 3}, "text/html, */*;q=0.8")
    with pytest.raises(inference.InputError) as err:
        inference.output_fn({"count": 3}, "text/csv")
    assert err.value.status == 406


def test_model_fn_says_what_to_do_with_a_wrong_path(tmp_path, served_run):
    with pytest.raises(BincountError, match="does not exist"):
        inference.model_fn(tmp_path / "nope")
    with pytest.raises(BincountError, match="no checkpoint"):
        inference.model_fn(tmp_path)
    with pytest.raises(BincountError, match="bincount export"):
        inference.model_fn(tmp_path, backend="onnx")
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((served_run / "checkpoints" / "best.ckpt").read_bytes()[:5000])
    with pytest.raises(BincountError, match="is not a checkpoint that loads: truncated"):
        inference.model_fn(broken)


def test_calibration_of_another_checkpoint_is_ignored(served_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(served_run, run)
    cal = json.loads((run / "calibration.json").read_text())
    cal["version"] = "000000000000"
    (run / "calibration.json").write_text(json.dumps(cal))
    model = inference.model_fn(run)
    assert not model.info["calibrated"] and model.temperature == 1.0
