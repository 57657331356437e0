"""What the machine offers a run: numeric precision and DataLoader workers.

- `precision("auto")`: `bf16-mixed` on a CUDA GPU that supports bfloat16 (Ampere and newer:
  A10G, A100, L4, H100), `16-mixed` on older GPUs (T4, V100), `32-true` on the CPU (where
  bfloat16 autocast was measured slower: benchmarks/RESULTS.md). Any other value is Lightning's
  own and passes through.
- `loader_workers()`: on the CPU, at most 2 (this project's measured default: more workers
  steal cores from the model); with a GPU, the instance's CPUs (`SM_NUM_CPUS` inside a
  SageMaker job, else the cores this process may use) shared among the training processes of
  this node (`LOCAL_WORLD_SIZE`, set by torchrun), at most 16 each.
"""

from __future__ import annotations

import os

import torch

MAX_GPU_WORKERS = 16


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def precision(value: str | int, accelerator: str = "auto") -> str | int:
    if str(value) != "auto":
        return value
    if not _uses_cuda(str(accelerator)):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _cpus() -> int:
    declared = os.environ.get("SM_NUM_CPUS", "")
    if declared.isdigit() and int(declared) > 0:
        return int(declared)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def loader_workers(cuda: bool | None = None) -> int:
    if cuda is None:
        cuda = torch.cuda.is_available()
    cpus = _cpus()
    if not cuda:
        return min(2, cpus)
    procs = os.environ.get("LOCAL_WORLD_SIZE", "")
    per_process = cpus // (int(procs) if procs.isdigit() and int(procs) > 0 else 1)
    return max(1, min(MAX_GPU_WORKERS, per_process - 1 if per_process > 2 else per_process))
