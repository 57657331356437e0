"""One plain log line per epoch: readable in files and CI logs where a progress bar is not."""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl

from bincount import logged_metrics

log = logging.getLogger("bincount")


class EpochSummary(pl.Callback):
    def __init__(self, keys=logged_metrics.EPOCH):
        self.keys = keys
        self.start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module):  # runs after the epoch's validation
        metrics = trainer.callback_metrics
        shown = [logged_metrics.line_item(k, metrics[k].item()) for k in self.keys if k in metrics]
        log.info(
            "epoch %d/%d (%.0fs): %s",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            time.monotonic() - self.start,
            " ".join(shown),
        )
