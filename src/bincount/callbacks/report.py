"""Write the run's report (report.html) when fitting and testing end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger("bincount")


class WriteRunReport(pl.Callback):
    def __init__(self, dirpath: str | None = None, fmt: str = "html"):
        self.dirpath = dirpath
        self.fmt = fmt

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage not in ("fit", "test") or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:  # flush csv/metrics.csv before reading it
            logger.save()
        run = Path(self.dirpath or trainer.default_root_dir)
        try:
            from bincount.reports.run_report import write_report

            path = write_report(run, fmt=self.fmt)
        except Exception as e:  # the report must never fail the training it describes
            log.warning(
                "report: could not write the run report (%s); try `bincount report %s`", e, run
            )
            return
        log.info("report: %s", path)
