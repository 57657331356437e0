"""The order-aware verifier: it sees the photo's probabilities and the stated order, never the
truth, and loses the match when a unit or a line is altered."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import numpy as np
import pytest

from bincount.verify import order_model, orders

COUNTS = [1, 2, 3, 4, 5]


def test_the_order_logic_runs_without_torch():
    code = (
        "import sys, bincount.verify.orders, bincount.verify.order_model, "
        "bincount.inference.verdicts; print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


def photo(count: int, sharp: float = 0.9) -> np.ndarray:
    """The probabilities of a fair model that saw `count` objects (`sharp` on it)."""
    p = np.full(len(COUNTS), (1 - sharp) / (len(COUNTS) - 1))
    p[COUNTS.index(count)] = sharp
    return p


@pytest.fixture(scope="module")
def verifier(bins) -> dict:
    """Fitted on 5 draws of the stream over real bins whose photos a good model read: right
    with probability 0.98, else one off. (With 20% wrong orders, a `mismatch` at 90% precision
    needs such a model: an order one off from a 60%-right model's count is as often right.)"""
    rng = np.random.default_rng(0)
    x, wrong = [], []
    for seed in range(5):
        for order, truth in orders.stream(bins, 0.2, seed=seed):
            t = truth.true_total
            if t not in COUNTS:
                continue
            seen = t if rng.random() < 0.98 else int(np.clip(t + rng.choice([-1, 1]), 1, 5))
            x.append(order_model.features(photo(seen), COUNTS, order))
            wrong.append(truth.wrong)
    return order_model.fit(np.asarray(x), np.asarray(wrong), 0.9, 0.95)


def test_the_verifier_sees_the_stated_order_and_no_truth():
    assert {f.name for f in dataclasses.fields(orders.Order)} == {"id", "image", "lines", "total"}
    params = inspect.signature(order_model.answer).parameters
    assert list(params) == ["verifier", "p", "counts", "order"]


def test_an_order_altered_by_a_unit_or_a_line_loses_the_match(verifier, bins):
    assert verifier["validation"]["mismatch_precision"] >= 0.9
    assert verifier["validation"]["match_precision"] >= 0.95
    b = next(b for b in bins if b.total == 3 and len(b.lines) >= 2)
    right = orders.Order("o", b.image, b.lines, b.total)
    first, rest = b.lines[0], b.lines[1:]
    one_less = dataclasses.replace(first, quantity=first.quantity - 1)
    altered = {
        "unit missing": (one_less, *rest) if one_less.quantity else rest,
        "line missing": rest,
        "unit extra": (dataclasses.replace(first, quantity=first.quantity + 1), *rest),
    }
    p = photo(3)  # the photo clearly shows 3
    good = order_model.answer(verifier, p, COUNTS, right)
    assert good["verdict"] == "match"
    for what, lines in altered.items():
        order = orders.Order("o", b.image, tuple(lines), sum(x.quantity for x in lines))
        bad = order_model.answer(verifier, p, COUNTS, order)
        assert bad["p_match"] < good["p_match"] - 0.3, what
        assert bad["verdict"] == "mismatch", what
