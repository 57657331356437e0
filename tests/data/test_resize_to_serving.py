"""data.resize=squash is carried from training to serving and export, like the size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from runner import run_tiny
from torchvision.transforms import v2

from bincount import export, inference
from bincount.data import transforms

SIZE = 64


@pytest.fixture(scope="module")
def squash_run(tiny_source, tmp_path_factory):
    """A tiny real run trained with data.resize=squash (64 px, one short epoch)."""
    run, _ = run_tiny(
        tiny_source,
        tmp_path_factory.mktemp("squash"),
        f"data.image_size={SIZE}",
        "data.resize=squash",
        "data.max_per_split=16",
    )
    return run


def tensor(module, im, resize):
    """What the module should see: the photo made square by hand, normalised."""
    pre = module.preprocess
    if resize == "squash":
        square = im.resize((SIZE, SIZE), transforms.Image.BILINEAR, reducing_gap=2.0)
    else:
        square = transforms.Letterbox(SIZE, transforms.letterbox_fill(pre))(im)
    steps = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose([*steps, v2.Normalize(pre["mean"], pre["std"])])(square)


def test_squash_is_carried_from_training_to_serving(squash_run, tiny_source):
    metrics = json.loads((squash_run / "metrics.json").read_text())
    assert "val/macro_acc" in metrics["val"]  # the balanced figure is logged and written
    model = inference.model_fn(squash_run)
    assert model.preprocess["resize"] == "squash"
    photos = sorted((tiny_source / "bin-images").glob("*.jpg"))[::9][:4]
    datas = [p.read_bytes() for p in photos]
    images = [transforms.open_rgb(d, SIZE) for d in datas]
    assert all(im.width != im.height for im in images)  # squash and letterbox differ on these

    answer = inference.predict_fn(inference.Request(datas, [None] * 4, batch=True), model)
    served = np.array(
        [[p["probabilities"][str(c)] for c in model.counts] for p in answer["predictions"]]
    )
    module = inference.load_net(squash_run / "checkpoints" / "best.ckpt")
    with torch.inference_mode():
        squashed = module(torch.stack([tensor(module, im, "squash") for im in images]))
        boxed = module(torch.stack([tensor(module, im, "letterbox") for im in images]))
    squashed, boxed = squashed.softmax(1).numpy(), boxed.softmax(1).numpy()
    assert np.abs(served - squashed).max() < 1e-4
    assert np.abs(served - boxed).max() > 1e-3  # letterboxing would have answered otherwise

    # The ONNX export says squash too, and its backend answers the same.
    onnx = export.export_onnx(squash_run)
    meta = json.loads((onnx.parent / inference.ONNX_META).read_text())
    assert meta["preprocess"]["resize"] == "squash"
    exported = inference.probabilities(inference.model_fn(onnx, backend="onnx"), images)
    assert np.abs(exported - squashed).max() < 1e-4


def test_an_unknown_resize_is_a_clear_error():
    with pytest.raises(transforms.BincountError, match="data.resize='crop'"):
        transforms.build({"resize": "crop", "image_size": 8, "mean": [0] * 3, "std": [1] * 3})


def test_a_preprocess_without_resize_letterboxes():
    old = {"image_size": 8, "mean": [0.5] * 3, "std": [0.5] * 3}  # an older checkpoint's
    assert isinstance(transforms.build(old).transforms[0], transforms.Letterbox)
