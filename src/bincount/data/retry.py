"""Retry a request that failed for a passing reason (throttling, 5xx, a dropped connection).

Exponential backoff with jitter: the n-th retry waits between half and all of
min(cap, base * 2**n) seconds, so many workers throttled at once do not retry in step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from bincount.data.stores import Transient

T = TypeVar("T")
BASE_DELAY = 0.25
MAX_DELAY = 20.0


def backoff(retry: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    delay = min(cap, base * 2**retry)
    return delay / 2 + random.uniform(0, delay / 2)


def with_retries(
    fn: Callable[[], T],
    attempts: int = 8,
    on_retry: Callable[[Transient], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """fn(), made again after a `Transient` failure, at most `attempts` times in all
    (`sleep`: how to wait, e.g. an Event's wait, so that a stop need not sit out the delay)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Transient as e:
            if attempt + 1 >= max(1, attempts):
                raise
            if on_retry:
                on_retry(e)
            sleep(backoff(attempt))
    raise AssertionError("unreachable")
