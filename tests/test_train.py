"""train.py end to end: the run folder, reproducibility, and the errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from runner import run_train

from bincount.training.runner import train


def fast_dev_run(source, tmp_path, *overrides):
    """train.py with debug=fdr on `source`, its run folder in tmp_path/run."""
    return run_train(
        *overrides,
        "debug=fdr",
        "experiment=smoke",
        f"data.source={source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )


def test_fast_dev_run_of_the_entrypoint(tiny_source, tmp_path):
    proc = fast_dev_run(tiny_source, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["test/acc"] <= 1.0
    assert (tmp_path / "run" / "config.yaml").exists()
    assert "test/acc=" in proc.stdout


def test_trained_run_folder_is_complete(trained_run):
    for name in ("config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("test/acc", "test/rmse", "test/mae", "test/off_by_one", "test/acc_count_3"):
        assert key in test
    assert metrics["counts"] == [1, 2, 3, 4, 5]
    assert len(metrics["test_confusion"]) == 5
    assert sum(map(sum, metrics["test_confusion"])) == 10  # 2 test images per count of 8
    header = (trained_run / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss_epoch", "val/acc", "val/rmse", "val/off_by_one"):
        assert key in header
    ckpt = torch.load(
        trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False
    )
    pre = ckpt["hyper_parameters"]["preprocess"]
    assert pre == {"resize": "letterbox", "image_size": 96, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_train_returns_the_objective_and_is_reproducible(make_cfg, tiny_source, tmp_path):
    results = []
    for name in ("a", "b"):
        cfg = make_cfg(
            "experiment=smoke",
            "debug=limit",
            f"data.source={tiny_source}",
            "data.image_size=64",
            "data.num_workers=0",
        )
        cfg.paths.output_dir = str(tmp_path / name)
        value = train(cfg)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert value == metrics["objective"]["value"]
        results.append(metrics)
    assert results[0]["val"] == results[1]["val"]
    assert results[0]["test"] == results[1]["test"]


def _fails(proc, *words):
    assert proc.returncode != 0
    assert "Error in call to target" not in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for w in words:
        assert w in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["data.source=/no/such/folder"], ["does not exist", "data.source="]),
        (["model=resnet5O"], ["model/resnet5O", "resnet50"]),
        (["model.net.backbone=resnet5O"], ["unknown backbone", "did you mean"]),
        (
            ["model=resnet50", "lr=0.01"],
            ["resnet50", "model.net.pretrained=false", "model.net.weights="],
        ),
        (["lrr=0.1"], ["lrr"]),
        (["batch_size=0"], ["batch_size=0"]),
    ],
    ids=[
        "missing-data",
        "unknown-model-config",
        "unknown-backbone",
        "no-weights",
        "bad-key",
        "bad-batch-size",
    ],
)
@pytest.mark.long
def test_user_errors_are_clear(tmp_path, overrides, words):
    proc = run_train(*overrides, f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    _fails(proc, *words)


@pytest.mark.long
def test_random_weights_train_when_asked(tiny_source, tmp_path):
    proc = fast_dev_run(tiny_source, tmp_path, "model=resnet18", "model.net.pretrained=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "random weights" in proc.stderr + proc.stdout
    assert Path(tmp_path / "run" / "metrics.json").exists()
