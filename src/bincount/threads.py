"""CPU threads that sleep while they wait: `OMP_WAIT_POLICY=PASSIVE`, unless set already.

PyTorch's OpenMP threads spin between parallel regions by default. When the cores are shared
(other jobs, DataLoader workers, a server's request threads), a spinning thread holds a core
that the straggler it waits for needs, and each of the thousands of small parallel regions of
a step waits for a time slice. On this project's 2-core machine under load,
`benchmarks/bench_train_step.py` and `benchmarks/bench_infer.py` measure that cost
(docs/performance.md). OpenMP reads the variable once, when torch loads it: `bincount/__init__.py`
calls `apply()` before anything imports torch. `OMP_WAIT_POLICY=ACTIVE` in the environment
brings spinning back.
"""

from __future__ import annotations

import os


def apply() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
