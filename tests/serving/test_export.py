"""ONNX export: onnxruntime and PyTorch agree on real photos, and bad files say what to do."""

from __future__ import annotations

import json

import pytest

from bincount import export, inference
from bincount.errors import BincountError
from bincount.inference.onnx import OnnxNet


def test_onnx_and_torch_agree_on_real_photos(served_run, photos):
    onnx = served_run / "onnx" / "model.onnx"
    diff = export.parity(served_run, onnx, photos)
    assert diff < 1e-4


def test_export_writes_the_preprocessing_beside_the_model(served_run, torch_model):
    meta = json.loads((served_run / "onnx" / "model.json").read_text())
    assert meta["preprocess"] == torch_model.preprocess
    assert meta["counts"] == torch_model.counts
    assert meta["version"] == torch_model.info["version"]


def test_export_elsewhere_carries_the_calibration(served_run, tmp_path, onnx_model):
    path = export.export_onnx(served_run / "checkpoints" / "best.ckpt", tmp_path / "out")
    assert (tmp_path / "out" / "calibration.json").is_file()
    moved = inference.model_fn(path)
    assert moved.info["backend"] == "onnx" and moved.info["calibrated"]
    assert moved.temperature == onnx_model.temperature


def test_broken_onnx_file_is_a_clear_error(tmp_path, served_run):
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    (tmp_path / "model.json").write_text((served_run / "onnx" / "model.json").read_text())
    with pytest.raises(BincountError, match="not a usable ONNX model"):
        inference.model_fn(tmp_path / "model.onnx")
    with pytest.raises(BincountError, match="already an ONNX model"):
        export.export_onnx(tmp_path / "model.onnx")


def test_onnx_threads_come_from_the_environment(served_run, photos, monkeypatch):
    onnx = served_run / "onnx" / "model.onnx"
    one = OnnxNet(onnx, threads=1, spin=False)
    assert one.session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("BINCOUNT_ONNX_THREADS", "2")
    assert inference.model_fn(onnx).info["backend"] == "onnx"
    monkeypatch.setenv("BINCOUNT_ONNX_THREADS", "two")
    with pytest.raises(BincountError, match="BINCOUNT_ONNX_THREADS='two'"):
        inference.model_fn(onnx)


@pytest.mark.long
def test_onnx_answers_like_torch_for_every_head_tta_and_aux(tiny_source, tmp_path, photos):
    # The ordinal head (one raw score) with an auxiliary head (three more outputs) and flips:
    # the exported graph must give the module's per-count scores, not the backbone's raw output.
    from runner import run_train

    run = tmp_path / "run"
    proc = run_train(
        "experiment=smoke",
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run}",
        "data.image_size=64",
        "data.num_workers=0",
        "model.net.head=ordinal",
        "model.net.aux=true",
        "model.aux_weight=0.5",
        "model.net.tta=flips",
        "test=false",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    onnx = export.export_onnx(run)
    model = inference.model_fn(onnx, backend="onnx")
    size = model.preprocess["image_size"]
    decoded = [inference.decode_image(p.read_bytes(), size, str(p)) for p in photos[:4]]
    assert inference.probabilities(model, decoded).shape == (4, 5)
    assert export.parity(run, onnx, photos) < 1e-4
