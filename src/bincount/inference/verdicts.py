"""Verification: does the bin hold the quantity the order says? `match`, `mismatch` or `unsure`.

The verdict reads the calibrated probability of the expected count, p = P(count = expected):
`mismatch` when p < `mismatch_below`, `match` when p >= `match_at_least`, `unsure` in between.
Both thresholds are chosen on the validation split (`choose_thresholds`) for an order stream
in which a share `mismatch_rate` of orders state a wrong quantity, off by one from the truth:
`mismatch_below` is the largest threshold whose mismatch flags reach `target_precision`,
`match_at_least` the smallest whose matches reach `match_precision`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERDICTS = ("match", "mismatch", "unsure")


def verdict(expected: int, p: np.ndarray, counts: list[int], thresholds: dict | None) -> dict:
    """The verdict fields of an answer for one image with calibrated probabilities `p`."""
    if expected not in counts:
        return {
            "expected": expected,
            "p_expected": None,
            "verdict": "unsure",
            "reason": f"the model only knows the counts {counts[0]}..{counts[-1]}",
        }
    q = float(p[counts.index(expected)])
    out = {"expected": expected, "p_expected": round(q, 6)}
    if thresholds is None:
        return {**out, "verdict": "unsure", "reason": "uncalibrated: run `bincount calibrate`"}
    if q < thresholds["mismatch_below"]:
        return {**out, "verdict": "mismatch"}
    if q >= thresholds["match_at_least"]:
        return {**out, "verdict": "match"}
    return {**out, "verdict": "unsure"}


@dataclass
class Orders:
    """Weighted (image, expected) pairs: p_expected, whether the order is wrong, weight."""

    p_expected: np.ndarray
    wrong: np.ndarray
    weight: np.ndarray


def order_stream(probs: np.ndarray, labels: np.ndarray, mismatch_rate: float) -> Orders:
    """Every image once with its true count (weight 1 - rate) and once with each neighbouring
    count (weights summing to rate): the expected value over the order stream, exactly."""
    p, wrong, weight = [], [], []
    k = probs.shape[1]
    for row, t in zip(probs, labels, strict=True):
        p.append(row[t])
        wrong.append(False)
        weight.append(1.0 - mismatch_rate)
        neighbours = [n for n in (t - 1, t + 1) if 0 <= n < k]
        for n in neighbours:
            p.append(row[n])
            wrong.append(True)
            weight.append(mismatch_rate / len(neighbours))
    return Orders(np.asarray(p), np.asarray(wrong), np.asarray(weight))


def _cut(p_sorted: np.ndarray, n: int, ascending: bool) -> float:
    """A threshold that separates the first n values of p_sorted from the rest: flagged are
    p < t (ascending) or p >= t (descending); midway between neighbours."""
    if n == 0:
        return 0.0 if ascending else 1.0 + 1e-9
    last = float(p_sorted[n - 1])
    if n == len(p_sorted):
        return last + 1e-9 if ascending else last
    return (last + float(p_sorted[n])) / 2


def _largest_prefix(good: np.ndarray, weight: np.ndarray, p: np.ndarray, target: float) -> int:
    """The largest prefix (cut only between distinct values of p) whose weighted precision
    reaches target."""
    hits = np.cumsum(weight * good)
    total = np.cumsum(weight)
    ok = (hits / total >= target) & np.append(p[1:] != p[:-1], True)
    idx = np.nonzero(ok)[0]
    return int(idx[-1]) + 1 if len(idx) else 0


def thresholds_for(orders: Orders, target_precision: float, match_precision: float) -> dict:
    """{thresholds: {mismatch_below, match_at_least}, validation: summary} for orders whose
    score (`p_expected`: any probability that the order is right) is cut twice: `mismatch`
    below the largest cut whose flags reach `target_precision`, `match` from the smallest whose
    matches reach `match_precision`."""
    up = np.argsort(orders.p_expected, kind="stable")
    p_up = orders.p_expected[up]
    n_mis = _largest_prefix(orders.wrong[up], orders.weight[up], p_up, target_precision)
    down = up[::-1]
    p_down = orders.p_expected[down]
    n_match = _largest_prefix(~orders.wrong[down], orders.weight[down], p_down, match_precision)
    thresholds = {
        "mismatch_below": _cut(p_up, n_mis, ascending=True),
        "match_at_least": _cut(p_down, n_match, ascending=False),
    }
    thresholds["match_at_least"] = max(thresholds["match_at_least"], thresholds["mismatch_below"])
    return {"thresholds": thresholds, "validation": summarize_orders(orders, thresholds)}


def choose_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    target_precision: float,
    match_precision: float,
    mismatch_rate: float,
) -> dict:
    orders = order_stream(probs, labels, mismatch_rate)
    chosen = thresholds_for(orders, target_precision, match_precision)
    return {**chosen["thresholds"], "validation": chosen["validation"]}


def summarize_orders(orders: Orders, thresholds: dict) -> dict:
    """Mismatch flags, their precision and recall, and the share left unsure (weighted)."""
    w, wrong = orders.weight, orders.wrong
    mismatch = orders.p_expected < thresholds["mismatch_below"]
    match = ~mismatch & (orders.p_expected >= thresholds["match_at_least"])
    unsure = ~mismatch & ~match
    return summary(w, wrong, mismatch, match, unsure)


def summary(w, wrong, mismatch, match, unsure) -> dict:
    def share(mask, of=None) -> float | None:
        base = w if of is None else w * of
        denom = base.sum()
        return round(float((base * mask).sum() / denom), 4) if denom > 0 else None

    return {
        "orders": round(float(w.sum()), 2),
        "wrong_orders": round(float((w * wrong).sum()), 2),
        "flagged_mismatch": round(float((w * mismatch).sum()), 2),
        "mismatch_precision": share(wrong, mismatch),
        "mismatch_recall": share(mismatch, wrong),
        "match_precision": share(~wrong, match),
        "share_unsure": share(unsure),
    }


def evaluate(verdicts: list[str], wrong: list[bool]) -> dict:
    """The same table for real verdicts on orders whose truth is known (unweighted)."""
    v = np.asarray(verdicts)
    w = np.ones(len(v))
    wrong_a = np.asarray(wrong, dtype=bool)
    return summary(w, wrong_a, v == "mismatch", v == "match", v == "unsure")
