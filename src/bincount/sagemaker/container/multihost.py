"""DDP over several SageMaker instances, each with its own disk (container side only).

Lightning writes checkpoints on the first process only; on SageMaker the other hosts would then
have none: `train()` would test their final weights instead of the best ones. Here the first
process of every host writes them (the weights are the same on every rank), so every host tests
the best checkpoint and finds its last one after a restart.
"""

from __future__ import annotations

from pytorch_lightning.strategies import DDPStrategy


class MultiHostDDP(DDPStrategy):
    def save_checkpoint(self, checkpoint, filepath, storage_options=None) -> None:
        if self.local_rank == 0:
            self.checkpoint_io.save_checkpoint(
                checkpoint, filepath, storage_options=storage_options
            )

    def remove_checkpoint(self, filepath) -> None:
        if self.local_rank == 0:
            self.checkpoint_io.remove_checkpoint(filepath)
