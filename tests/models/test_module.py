"""The LightningModule learns: a small model overfits a few real batches."""

from __future__ import annotations

import csv

import pytest
from runner import run_train


@pytest.mark.long
def test_tiny_model_overfits_a_few_batches(tiny_source, tmp_path):
    # Through train.py in its own process: in-process under pytest the same fit ran ~10x slower.
    proc = run_train(
        "experiment=smoke",
        "debug=overfit",
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "data.image_size=64",
        "data.num_workers=0",
        "batch_size=8",
        "lr=0.003",
        "trainer.overfit_batches=2",
        "trainer.max_epochs=25",
        "scheduler=none",
        "test=false",
        "callbacks=none",  # no checkpoint writes: this test is about the loss only
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        losses = [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r["train/loss_epoch"]]
    assert len(losses) == 25
    assert losses[-1] < 0.25 * losses[0], losses
