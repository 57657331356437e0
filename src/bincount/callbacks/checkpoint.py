"""Lightning's ModelCheckpoint, with `last.ckpt` written at the end of every epoch.

Since Lightning 2.6, `save_last=True` writes `last.ckpt` only when the monitored metric improves
(when `best.ckpt` is written), plus once in `on_train_end` (with `epoch` one past the last
epoch) if nothing was written during the run. On a plateau `last.ckpt` then stays at an older
epoch: a spot job killed after such epochs resumes from it and trains them again, and
`train.py ckpt_path=.../last.ckpt` does the same. Here `last.ckpt` follows every epoch's end
(every validation with `trainer.val_check_interval` < 1), as it did before 2.6.

The class keeps Lightning's name: the callback's state key in a checkpoint is
`ModelCheckpoint{...}` either way, so runs saved before this class resume with their best score.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn


class ModelCheckpoint(LightningModelCheckpoint):
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
