"""Temperature scaling and the verdict thresholds: recovered on data with a known answer,
and written for a real run by `calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bincount.inference import verdicts
from bincount.verify import calibration


def overconfident(n=4000, k=5, temperature=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports z * temperature (overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p = calibration.softmax(z)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return z * temperature, labels


def test_fit_temperature_recovers_the_overconfidence():
    logits, labels = overconfident(temperature=3.0)
    t = calibration.fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before = calibration.ece(calibration.softmax(logits), labels)
    after = calibration.ece(calibration.softmax(logits, t), labels)
    assert after < before / 3
    assert calibration.nll(logits, labels, t) < calibration.nll(logits, labels)


def test_ece_is_zero_for_perfect_confident_answers():
    labels = np.array([0, 1, 2, 1])
    probs = np.eye(3)[labels]
    assert calibration.ece(probs, labels) == pytest.approx(0.0)
    assert calibration.ece(np.eye(3)[[1, 2, 0, 0]], labels) == pytest.approx(1.0)


def test_thresholds_reach_the_target_precision_on_their_own_orders():
    logits, labels = overconfident(temperature=1.0, seed=1)
    probs = calibration.softmax(logits)
    chosen = verdicts.choose_thresholds(probs, labels, 0.9, 0.95, 0.2)
    v = chosen["validation"]
    assert v["mismatch_precision"] >= 0.9
    assert v["match_precision"] >= 0.95
    assert chosen["mismatch_below"] <= chosen["match_at_least"]
    # a stricter target flags fewer
    strict = verdicts.choose_thresholds(probs, labels, 0.99, 0.95, 0.2)
    assert strict["mismatch_below"] <= chosen["mismatch_below"]


def test_unreachable_target_never_flags():
    probs = np.full((50, 3), 1 / 3)  # a model that knows nothing
    labels = np.arange(50) % 3
    chosen = verdicts.choose_thresholds(probs, labels, 0.9, 0.95, 0.2)
    assert chosen["mismatch_below"] == 0.0
    assert verdicts.verdict(2, probs[0], [1, 2, 3], chosen)["verdict"] == "unsure"


def test_evaluate_counts_precision_and_unsure():
    table = verdicts.evaluate(
        ["mismatch", "mismatch", "match", "unsure"], [True, False, False, True]
    )
    assert table["mismatch_precision"] == 0.5
    assert table["mismatch_recall"] == 0.5
    assert table["share_unsure"] == 0.25


def test_calibrate_writes_the_runs_calibration(served_run):
    cal = json.loads((served_run / "calibration.json").read_text())
    assert cal["split"] == "val" and cal["images"] > 0
    assert cal["temperature"] > 0
    assert cal["nll_after"] <= cal["nll_before"] + 1e-6
    assert set(cal["thresholds"]) == {"mismatch_below", "match_at_least"}
    assert {"ece_before", "ece_after"} <= set(cal)
