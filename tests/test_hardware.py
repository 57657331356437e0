"""Precision and DataLoader workers chosen from the machine (bincount.hardware)."""

import pytest

from bincount import hardware


def test_auto_precision_is_full_precision_on_this_cpu_machine():
    assert hardware.precision("auto") == "32-true"
    assert hardware.precision("auto", "cpu") == "32-true"


@pytest.mark.parametrize("value", ["32-true", "bf16-mixed", "16-mixed", 64])
def test_explicit_precision_passes_through(value):
    assert hardware.precision(value) == value


def test_cpu_workers_stay_at_two_at_most(monkeypatch):
    monkeypatch.setenv("SM_NUM_CPUS", "96")
    assert hardware.loader_workers(cuda=False) == 2
    monkeypatch.setenv("SM_NUM_CPUS", "1")
    assert hardware.loader_workers(cuda=False) == 1


@pytest.mark.parametrize(
    ("cpus", "local_procs", "expected"),
    [("8", None, 7), ("48", "4", 11), ("96", "8", 11), ("192", None, 16), ("4", "4", 1)],
)
def test_gpu_workers_share_the_instance_cpus_among_local_processes(
    monkeypatch, cpus, local_procs, expected
):
    monkeypatch.setenv("SM_NUM_CPUS", cpus)
    if local_procs is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_procs)
    assert hardware.loader_workers(cuda=True) == expected


def test_without_sagemaker_the_usable_cores_count(monkeypatch):
    monkeypatch.delenv("SM_NUM_CPUS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    import os

    assert hardware.loader_workers(cuda=True) == max(1, min(16, len(os.sched_getaffinity(0))))
