"""Stochastic weight averaging over the end of a schedule: `callbacks=swa`.

`WindowAverage` keeps the plain (equal-weight) average of the weights after every optimizer
step from epoch `start` on: a fraction of `trainer.max_epochs` (0.5: the second half) or an
epoch index. Lightning's `WeightAveraging` does the rest as for `callbacks=ema`: validation,
the checkpoints' `state_dict`, the test stage and everything that loads a checkpoint afterwards
(evaluate, serve, export) use the average, and the raw weights stay in the checkpoint under
`current_model_state` for resuming. Before `start`, nothing is averaged yet: validation and the
checkpoints hold the raw weights (Lightning's `StochasticWeightAveraging` callback, by contrast,
swaps the average in only when training ends, after the last checkpoint was written, so the
kept checkpoint would never hold it). Buffers (BatchNorm statistics) are averaged too.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
from pytorch_lightning.callbacks import WeightAveraging

from bincount import validate


class WindowAverage(WeightAveraging):
    def __init__(self, start: float = 0.5, **kwargs):
        validate.check_setting("callbacks.swa.start", start)
        super().__init__(**kwargs)
        self.start = start
        self.start_epoch = 0
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer
        if self.start < 1 and trainer.max_epochs and trainer.max_epochs > 0:
            self.start_epoch = math.floor(self.start * trainer.max_epochs)
        else:
            self.start_epoch = int(self.start)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        epoch = self._trainer.current_epoch if self._trainer is not None else 0
        return step_idx is not None and epoch >= self.start_epoch

    @property
    def averaging(self) -> bool:
        """Whether the average holds anything yet (else the raw weights are the ones to use)."""
        model = self._average_model
        return model is not None and int(model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.averaging:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.averaging:
            super().on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.averaging:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.averaging:
            super().on_train_end(trainer, pl_module)
