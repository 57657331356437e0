"""Every validation's `val/*` figures, to report those of the epoch the checkpoint kept.

The trainer's `callback_metrics` at the end of fitting are the last epoch's; the served model is
the best checkpoint's. `ValHistory.kept(checkpoint)` finds the validation whose monitored value is
the checkpoint's best score (the first such one: ModelCheckpoint replaces its best only on a
strict improvement), so metrics.json, compare and the trackers report that epoch's figures. Its
record travels in the checkpoints (`state_dict`): a resumed run still knows its earlier epochs.
"""

from __future__ import annotations

import pytorch_lightning as pl


class ValHistory(pl.Callback):
    def __init__(self) -> None:
        self.records: list[dict] = []  # {"epoch": 1-based, "step": global step, "val/...": x}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        figures = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if not figures:
            return
        record = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step, **figures}
        if self.records and self.records[-1]["step"] == record["step"]:
            self.records[-1] = record  # validated again at the same step (e.g. after a resume)
        else:
            self.records.append(record)

    def last(self) -> dict | None:
        return self.records[-1] if self.records else None

    def kept(self, checkpoint) -> dict | None:
        """The record of the validation the checkpoint kept as best; the last one when the
        checkpoint monitors nothing (it keeps the last weights); None when unknown."""
        monitor = getattr(checkpoint, "monitor", None)
        score = getattr(checkpoint, "best_model_score", None)
        if checkpoint is None or monitor is None or score is None:
            return self.last()
        best = float(score)
        for record in self.records:
            if monitor in record and record[monitor] == best:
                return record
        return None

    def state_dict(self) -> dict:
        return {"records": list(self.records)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.records = list(state_dict.get("records", []))
