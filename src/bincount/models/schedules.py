"""Learning-rate schedules built from config: each takes (optimizer, total_steps, ...)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR


def onecycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.15) -> OneCycleLR:
    """Warm up to each group's lr, then cosine-anneal to ~0 (the fast.ai one-cycle)."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start)


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_pct: float = 0.05, min_factor: float = 0.01
) -> LambdaLR:
    """Linear warm-up over `warmup_pct` of the steps, then cosine decay to `min_factor` x lr."""
    warmup = max(1, int(total_steps * warmup_pct))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
