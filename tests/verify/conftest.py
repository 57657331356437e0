"""Fixtures of the order-verification tests: real bins of ../shared/abid."""

from __future__ import annotations

import pytest

from bincount.verify import orders


@pytest.fixture(scope="module")
def bins(abid) -> list[orders.Bin]:
    """300 real bins (photo + line items) spread over the mirror."""
    paths = sorted((abid / "bin-images").glob("*.jpg"))[::8]
    out = [b for b in (orders.read_bin(p) for p in paths) if b is not None]
    assert len(out) >= 300
    return out[:300]
