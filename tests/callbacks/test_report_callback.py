"""WriteRunReport writes report.html at the end of a run, and never fails the training."""

from __future__ import annotations

import logging

import pytorch_lightning as pl

from bincount.callbacks.health import TrainingHealth
from bincount.callbacks.report import WriteRunReport


def test_report_is_written_when_fitting_ends(fit, small_cnn, tmp_path):
    fit(
        small_cnn(),
        [TrainingHealth(dirpath=str(tmp_path)), WriteRunReport(str(tmp_path))],
        epochs=1,
    )
    page = (tmp_path / "report.html").read_text()
    assert "gradient norms" in page and "<tr class=ok><td>non_finite</td>" in page


def test_a_report_that_cannot_be_written_is_a_warning(tmp_path, caplog):
    trainer = pl.Trainer(default_root_dir=str(tmp_path), logger=False)
    with caplog.at_level(logging.WARNING, logger="bincount"):
        WriteRunReport(str(tmp_path / "missing")).teardown(trainer, None, "fit")
    assert "could not write the run report (no run folder at" in caplog.text
    assert not (tmp_path / "missing").exists()
