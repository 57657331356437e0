"""Which epoch the kept checkpoint holds: the best by a metric, the best by its smoothed curve
(callbacks=smooth), or the last (callbacks=last); trained by a real Lightning Trainer on a
module whose validation metric follows a script."""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from bincount.callbacks.checkpoint import ModelCheckpoint
from bincount.callbacks.selection import SmoothedMetric
from bincount.errors import BincountError

# val/macro_acc by epoch: a lucky epoch 1, a smoothed peak at epoch 3, a low last epoch
SCRIPT = [0.30, 0.60, 0.55, 0.52, 0.30]
SMOOTH = [0.30, 0.45, 0.50, 0.51, 0.405]  # decay 0.5


class Scripted(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def validation_step(self, batch, _):
        pass

    def on_validation_epoch_end(self):  # as CountModule logs its epoch metrics
        if not self.trainer.sanity_checking:
            self.log("val/macro_acc", SCRIPT[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)


def fit(tmp_path, monitor="val/macro_acc", keep="best", smooth=True):
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path,
        filename="best",
        monitor=monitor,
        mode="max",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
        keep=keep,
    )
    callbacks = [checkpoint, *([SmoothedMetric("val/macro_acc", 0.5)] if smooth else [])]
    trainer = pl.Trainer(
        max_epochs=len(SCRIPT),
        callbacks=callbacks,
        logger=CSVLogger(tmp_path, name="csv", version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Scripted(), loader(), loader())
    best = torch.load(tmp_path / "best.ckpt", weights_only=False)
    return trainer, checkpoint, best["epoch"]


def test_the_smoothed_metric_is_logged_and_selects_its_peak(tmp_path):
    trainer, checkpoint, epoch = fit(tmp_path, monitor="val/macro_acc_smooth")
    assert epoch == 3  # the raw metric's best is the lucky epoch 1
    assert float(checkpoint.best_model_score) == pytest.approx(max(SMOOTH))
    assert float(trainer.callback_metrics["val/macro_acc_smooth"]) == pytest.approx(SMOOTH[-1])
    with open(tmp_path / "csv" / "metrics.csv") as f:
        logged = [
            float(r["val/macro_acc_smooth"])
            for r in csv.DictReader(f)
            if r.get("val/macro_acc_smooth")
        ]
    assert logged == pytest.approx(SMOOTH)


def test_the_raw_metric_keeps_the_lucky_epoch_and_last_keeps_the_last(tmp_path):
    assert fit(tmp_path / "raw")[2] == 1
    _, checkpoint, epoch = fit(tmp_path / "last", keep="last", smooth=False)
    assert epoch == len(SCRIPT) - 1 and checkpoint.monitor is None
    assert checkpoint.best_model_path.endswith("best.ckpt")


def test_a_smoothed_monitor_without_the_callback_says_what_to_add(tmp_path):
    with pytest.raises(BincountError, match="add callbacks=smooth"):
        fit(tmp_path, monitor="val/macro_acc_smooth", smooth=False)
    with pytest.raises(BincountError, match=r"keep=first.*best.*last"):
        ModelCheckpoint(dirpath=tmp_path, keep="first")


def test_the_average_resumes_from_its_state():
    a = SmoothedMetric(decay=0.5)
    for x in SCRIPT[:3]:
        a.update(x)
    b = SmoothedMetric(decay=0.5)
    b.load_state_dict(a.state_dict())
    assert b.update(SCRIPT[3]) == pytest.approx(SMOOTH[3]) and b.epochs == 4
    with pytest.raises(BincountError, match="decay=1"):
        SmoothedMetric(decay=1)
