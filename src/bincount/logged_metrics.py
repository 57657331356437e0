"""Every figure the trainer prints, one list, and how a log line spells it (torch-free).

The training side prints them (`bincount.callbacks.progress.EpochSummary` one line per epoch,
the end-of-run summary, the container's `best <objective>=` line); the launch side turns the
same list into SageMaker's metric definitions
(`bincount.sagemaker.launch.hpo.metric_definitions`) and
refuses a tuning objective that no definition covers. Add a figure here and both follow.

    epoch 3/8 (41s): train/loss_epoch=0.9120 train/acc=0.6250 val/loss=1.2031 val/acc=0.4062 ...
    test/acc=0.3750  test/rmse=1.1180  test/mae=0.8125  test/off_by_one=0.8750
    best val/macro_acc=0.412500
"""

from __future__ import annotations

import re

# Printed after every epoch (its validation included), in this order.
EPOCH = (
    "train/loss_epoch",
    "train/acc",
    "val/loss",
    "val/acc",
    "val/macro_acc",
    "val/rmse",
    "val/mae",
    "val/off_by_one",
)
# Printed once, at the end of the run (the test of the kept checkpoint).
TEST = ("test/acc", "test/rmse", "test/mae", "test/off_by_one")
LOGGED = EPOCH + TEST
# What a sweep may optimise: a validation figure printed every epoch.
OBJECTIVES = tuple(name for name in EPOCH if name.startswith("val/"))

NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def line_item(name: str, value: float, digits: int = 4) -> str:
    """`val/acc=0.8125`: how every figure appears in the log."""
    return f"{name}={value:.{digits}f}"


def regex(name: str) -> str:
    """The regex that reads `name`'s value from a log line (its first group)."""
    return rf"\b{re.escape(name)}={NUMBER}"
