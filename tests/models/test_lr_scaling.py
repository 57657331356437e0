"""optimizer.lr_scaling: the learning rate follows the effective batch (per process x processes)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from runner import run_tiny

from bincount.errors import BincountError
from bincount.models.lr_scaling import LrScaling, split


def test_the_factor_of_each_mode():
    assert LrScaling("none").factor(64, 8) == 1.0
    assert LrScaling("linear").factor(64, 8) == 8.0  # reference: one process's batch
    assert LrScaling("sqrt").factor(64, 8) == pytest.approx(math.sqrt(8))
    assert LrScaling("linear", reference_batch=256).factor(64, 8) == 2.0
    assert LrScaling("sqrt", reference_batch=256).factor(32, 2) == pytest.approx(0.5)


def test_the_keys_leave_the_optimizer_factory():
    factory = functools.partial(
        torch.optim.SGD, lr=0.1, momentum=0.9, lr_scaling="sqrt", reference_batch=128
    )
    cleaned, scaling = split(factory)
    assert scaling == LrScaling("sqrt", 128)
    assert cleaned.keywords == {"lr": 0.1, "momentum": 0.9}
    cleaned([torch.nn.Parameter(torch.zeros(1))])  # torch takes what is left
    with pytest.raises(BincountError, match="none, linear or sqrt"):
        split(functools.partial(torch.optim.SGD, lr=0.1, lr_scaling="cubic"))


@pytest.mark.long
def test_a_run_scales_its_lr_and_logs_the_effective_batch(tiny_source, tmp_path):
    """A real run on one process with a reference batch of half its batch: lr x 2."""
    _run, proc = run_tiny(
        tiny_source,
        tmp_path,
        "optimizer.lr_scaling=linear",
        "optimizer.reference_batch=8",
        "lr=0.004",
    )
    out = proc.stdout + proc.stderr
    assert (
        "lr x 2.000 (optimizer.lr_scaling=linear): effective batch 16 = 16 per process x 1" in out
    )
