"""ONNX export of a checkpoint (the onnxruntime backend that serves it: inference/onnx.py).

`export_onnx(model)` writes `model.onnx` (the network: normalised image batch -> logits, any
batch size) and `model.json` (its preprocessing, counts, name and version) into the run's
`onnx/` folder; `bincount serve|predict --backend onnx` then run it with onnxruntime, with the
same preprocessing and calibration as the PyTorch backend. `parity` measures how far the two
backends' probabilities are apart on real images.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from bincount import inference, rundir
from bincount.errors import BincountError
from bincount.fileio import (
    FileError,
    atomic_copy,
    atomic_write_bytes,
    atomic_write_json,
    read_input,
)

log = logging.getLogger(__name__)
OPSET = 17


def export_onnx(model_path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Export a run folder or checkpoint to `out` (default `<run>/onnx/`); returns model.onnx."""
    ckpt = inference.resolve(model_path, "torch")
    if ckpt.suffix == ".onnx":
        raise BincountError(f"{ckpt} is already an ONNX model: export a run folder or a .ckpt")
    net = inference.load_net(ckpt)
    # The whole net, not its backbone alone: the head (ordinal, regress) turns the net's raw
    # output into per-count scores, and test-time augmentation (model.net.tta) is part of the answer
    # too; auxiliary training outputs (model.net.aux) are left out. As the torch path answers.
    net.channels_last = False
    net = net.to(memory_format=torch.contiguous_format)
    size = net.preprocess["image_size"]
    run = rundir.run_folder(ckpt)
    out = Path(out) if out else run / rundir.ONNX_DIR
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FileError(
            f"cannot make the folder {out} ({e.strerror or e}): choose a writable folder with -o"
        ) from None
    tmp = out / ".model.onnx.export"
    example = torch.zeros(2, 3, size, size)
    try:
        _onnx_export(
            net,
            tmp,
            example,
        )
        atomic_write_bytes(out / "model.onnx", tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    meta = {
        "name": net.backbone_name,
        "version": inference.file_version(ckpt),  # the checkpoint's: its calibration applies
        "checkpoint": str(ckpt),
        "preprocess": dict(net.preprocess),
        "counts": [int(c) for c in net.counts],
        "input": "image: float32 (batch, 3, S, S), made square and normalised as `preprocess`",
        "output": "logits: float32 (batch, len(counts)); softmax(logits / temperature)",
        "opset": OPSET,
    }
    atomic_write_json(out / inference.ONNX_META, meta)
    calibration = run / inference.CALIBRATION
    if calibration.is_file() and rundir.run_folder(out / "model.onnx") != run:
        atomic_copy(calibration, out / inference.CALIBRATION)
    return out / "model.onnx"


def _onnx_export(net, tmp: Path, example) -> None:
    """torch.onnx.export to `tmp`; a full or read-only disk is one line (FileError)."""
    try:
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    except OSError as e:
        raise FileError(
            f"cannot write {tmp.parent / 'model.onnx'} ({e.strerror or e}): free some space or "
            "choose a writable folder with -o"
        ) from None


def parity(ckpt: str | os.PathLike, onnx: str | os.PathLike, images: list[Path]) -> float:
    """The largest |p_torch - p_onnx| over `images` (same preprocessing and calibration)."""
    torch_model = inference.model_fn(ckpt, backend="torch")
    onnx_model = inference.model_fn(onnx, backend="onnx")
    size = torch_model.preprocess["image_size"]
    decoded = [inference.decode_image(read_input(p, "--check"), size, str(p)) for p in images]
    a = inference.probabilities(torch_model, decoded)
    b = inference.probabilities(onnx_model, decoded)
    return float(np.abs(a - b).max())
