"""The order-aware verdict: is the stated order right? `match`, `mismatch` or `unsure`.

Input: the model's calibrated count probabilities for the photo and the STATED order (an
`orders.Order`: lines and total, no truth). A small logistic model maps features of both (how
likely the stated total is under the photo's count distribution, how far the expected count is
from it, and what the stated lines say: number of products, volume, weight) to P(order is
right). It is fitted by `fit` on orders built from the validation split's metadata (several
draws of the stream, a share of them wrong), and its two thresholds are chosen there like the
photo-only ones (`verdicts.thresholds_for`): `mismatch` when P(right) < `mismatch_below`,
`match` when P(right) >= `match_at_least`. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from bincount.errors import BincountError
from bincount.inference import verdicts
from bincount.verify.orders import Order

FEATURES = (
    "log_p_total",
    "p_within_one",
    "p_below",
    "p_above",
    "mean_minus_total",
    "abs_mean_minus_total",
    "lines",
    "total",
    "log_volume",
    "log_weight",
)
EPS = 1e-6


def features(p: np.ndarray, counts: list[int], order: Order) -> np.ndarray:
    """One row of FEATURES for a photo's probabilities `p` (over `counts`) and a stated order."""
    c = np.asarray(counts, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    t = order.total
    p_total = float(p[c == t].sum())
    volumes = [x.volume * x.quantity for x in order.lines if x.volume is not None]
    weights = [x.weight * x.quantity for x in order.lines if x.weight is not None]
    mean = float((p * c).sum())
    return np.array(
        [
            math.log(max(p_total, EPS)),
            float(p[np.abs(c - t) <= 1].sum()),
            float(p[c < t].sum()),
            float(p[c > t].sum()),
            mean - t,
            abs(mean - t),
            len(order.lines),
            t,
            math.log1p(sum(volumes)),
            math.log1p(sum(weights)),
        ]
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50) -> dict:
    """Standardised L2 logistic regression by Newton's method: {mean, std, coef, bias}."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2 * len(x))
    reg[-1] = 0.0
    for _ in range(steps):
        q = _sigmoid(z @ w)
        grad = z.T @ (q - y) + reg * w
        hess = (z * (q * (1 - q))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "coef": w[:-1].tolist(),
        "bias": float(w[-1]),
    }


def p_right(model: dict, x: np.ndarray) -> np.ndarray:
    """P(order is right) for rows of features."""
    z = (np.atleast_2d(x) - np.asarray(model["mean"])) / np.asarray(model["std"])
    return _sigmoid(z @ np.asarray(model["coef"]) + model["bias"])


def fit(x: np.ndarray, wrong: np.ndarray, target_precision: float, match_precision: float) -> dict:
    """The verifier for orders with features `x` and answers `wrong`: the logistic model and the
    thresholds of its verdicts, with what they give on these (validation) orders."""
    wrong = np.asarray(wrong, dtype=bool)
    if wrong.all() or not wrong.any():
        raise BincountError(
            "the validation orders are all right or all wrong: cannot fit the order verifier "
            "(use an error rate between 0 and 1 and more photos)"
        )
    model = {"features": list(FEATURES), **fit_logistic(np.asarray(x), (~wrong).astype(float))}
    orders = verdicts.Orders(p_right(model, x), wrong, np.ones(len(wrong)))
    chosen = verdicts.thresholds_for(orders, target_precision, match_precision)
    return {**model, **chosen}


def answer(verifier: dict, p: np.ndarray, counts: list[int], order: Order) -> dict:
    """The order-aware verdict for one photo's probabilities and its stated order."""
    if list(verifier.get("features", [])) != list(FEATURES):
        raise BincountError(
            "the order verifier was fitted on other features: run `bincount calibrate MODEL`"
        )
    q = float(p_right(verifier, features(p, counts, order))[0])
    t = verifier["thresholds"]
    if q < t["mismatch_below"]:
        v = "mismatch"
    elif q >= t["match_at_least"]:
        v = "match"
    else:
        v = "unsure"
    return {"p_match": round(q, 6), "verdict": v}
