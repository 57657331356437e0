"""Selection on a smoothed validation metric: `callbacks=smooth`.

On a few hundred validation photos, the best epoch of `val/macro_acc` is partly noise (issue
26: the kept epoch of the same recipe moved from 7 to 3 between two machines). `SmoothedMetric`
logs an exponential moving average of a per-epoch validation metric as its own metric,
`<metric>_smooth` (e.g. `val/macro_acc_smooth`):

    s_0 = x_0,   s_t = decay * s_{t-1} + (1 - decay) * x_t

so `optimized_metric=val/macro_acc_smooth` keeps the epoch where the smoothed curve peaks (the
checkpoint of that epoch's weights), and sweeps optimize the smoothed value. `decay=0.5` weighs
the last epoch 1/2, the one before 1/4, ...: one lucky epoch moves it half as far.

The value is computed when validation ends (after the module logged the epoch's metric) and put
into the trainer's callback metrics, which ModelCheckpoint reads afterwards (Lightning runs
checkpoint callbacks last), and written to every logger (csv/metrics.csv, TensorBoard, ...).
The average is part of the callback's state, so a resumed run continues it.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from bincount import validate

SUFFIX = "_smooth"


class SmoothedMetric(pl.Callback):
    def __init__(self, metric: str = "val/macro_acc", decay: float = 0.5):
        validate.check_setting("callbacks.smooth.decay", decay)
        self.metric = metric
        self.decay = float(decay)
        self.name = metric + SUFFIX
        self.value: float | None = None
        self.epochs = 0

    @property
    def state_key(self) -> str:
        return f"SmoothedMetric[{self.metric}]"

    def update(self, x: float) -> float:
        """Fold one epoch's value in; returns the smoothed value."""
        self.value = x if self.value is None else self.decay * self.value + (1 - self.decay) * x
        self.epochs += 1
        return self.value

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = self.update(float(trainer.callback_metrics[self.metric]))
        trainer.callback_metrics[self.name] = torch.tensor(value)
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.log_metrics(
                    {self.name: value, "epoch": trainer.current_epoch}, trainer.global_step
                )

    def state_dict(self) -> dict:
        return {"value": self.value, "epochs": self.epochs}

    def load_state_dict(self, state_dict: dict) -> None:
        self.value = state_dict.get("value")
        self.epochs = int(state_dict.get("epochs", 0))
