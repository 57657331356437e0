"""The LightningModule learns: a small model overfits a few real batches."""

from __future__ import annotations

import csv
from pathlib import Path

from bincount.train import train


def epoch_losses(run_dir) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [
            float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r.get("train/loss_epoch")
        ]


def test_tiny_model_overfits_a_few_batches(make_cfg, tiny_source):
    cfg = make_cfg(
        "experiment=smoke",
        "debug=overfit",
        f"data.source={tiny_source}",
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
    train(cfg)
    losses = epoch_losses(Path(cfg.paths.output_dir))
    assert len(losses) == 25
    assert losses[-1] < 0.25 * losses[0], losses
