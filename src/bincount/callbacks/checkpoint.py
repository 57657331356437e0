"""Lightning's ModelCheckpoint, with `last.ckpt` written at the end of every epoch.

Since Lightning 2.6, `save_last=True` writes `last.ckpt` only when the monitored metric improves
(when `best.ckpt` is written), plus once in `on_train_end` (with `epoch` one past the last
epoch) if nothing was written during the run. On a plateau `last.ckpt` then stays at an older
epoch: a spot job killed after such epochs resumes from it and trains them again, and
`train.py ckpt_path=.../last.ckpt` does the same. Here `last.ckpt` follows every epoch's end
(every validation with `trainer.val_check_interval` < 1), as it did before 2.6.

`keep` says which epoch `best.ckpt` holds: `best` (the default: the best `monitor`, i.e.
`optimized_metric`) or `last` (the last epoch's weights, whatever the metric says: for a
schedule that ends low, where the best epoch on a small validation split is partly noise;
`callbacks.model_checkpoint.keep=last`, or `callbacks=last`). With `last`, train.py's objective
is the metric at the last epoch.

A monitor that ends in `_smooth` (`optimized_metric=val/macro_acc_smooth`) is logged by the
`SmoothedMetric` callback (`callbacks=smooth`); without it, the run stops at the start with one
line saying so (Lightning would fail after the first epoch).

The class keeps Lightning's name: the callback's state key in a checkpoint is
`ModelCheckpoint{...}` either way, so runs saved before this class resume with their best score.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn

from bincount import validate
from bincount.callbacks.selection import SUFFIX, SmoothedMetric
from bincount.errors import BincountError


class ModelCheckpoint(LightningModelCheckpoint):
    def __init__(self, *args, keep: str = "best", **kwargs):
        validate.check_setting("callbacks.model_checkpoint.keep", keep)
        self.keep = keep
        if keep == "last":
            kwargs["monitor"] = None  # Lightning then keeps the latest epoch (save_top_k=1)
        super().__init__(*args, **kwargs)

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        monitor = self.monitor or ""
        smoothers = [c for c in trainer.callbacks if isinstance(c, SmoothedMetric)]
        if monitor.endswith(SUFFIX) and monitor not in {c.name for c in smoothers}:
            raise BincountError(
                f"optimized_metric={monitor} is logged by the smoothing callback: add "
                f"callbacks=smooth (it smooths {monitor.removesuffix(SUFFIX)}), or pick a "
                "logged metric such as val/macro_acc"
            )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer) -> None:
        if (
            not self.save_last
            or bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._last_global_step_saved == trainer.global_step  # already written at this step
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
