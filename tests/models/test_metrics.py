"""Count metrics against figures computed by hand."""

from __future__ import annotations

import math

import torch

from bincount.models.metrics import CountMetrics


def test_metrics_by_hand():
    m = CountMetrics([1, 2, 3, 4, 5])
    target = torch.tensor([0, 1, 2, 3, 4, 2])  # counts 1 2 3 4 5 3
    preds = torch.tensor([0, 2, 2, 0, 4, 4])  # counts 1 3 3 1 5 5
    m.update(preds, target)
    out = m.compute()
    errors = [0, 1, 0, -3, 0, 2]
    assert math.isclose(out["acc"], 3 / 6, abs_tol=1e-6)
    assert math.isclose(out["mae"], sum(map(abs, errors)) / 6, abs_tol=1e-6)
    assert math.isclose(out["rmse"], math.sqrt(sum(e * e for e in errors) / 6), abs_tol=1e-6)
    assert math.isclose(out["off_by_one"], 4 / 6, abs_tol=1e-6)
    assert out["acc_count_1"] == 1.0 and out["acc_count_2"] == 0.0
    assert math.isclose(out["acc_count_3"], 0.5) and out["acc_count_4"] == 0.0
    # the mean of the per-count accuracies 1, 0, 1/2, 0, 1 (acc is 3/6 = 0.5: count 3 twice)
    assert math.isclose(out["macro_acc"], (1 + 0 + 0.5 + 0 + 1) / 5, abs_tol=1e-6)
    cm = m.confusion_matrix()
    assert cm[3][0] == 1 and cm[2][4] == 1 and sum(map(sum, cm)) == 6
    m.reset()
    m.update(torch.tensor([1]), torch.tensor([1]))
    assert m.compute()["acc"] == 1.0


def test_macro_acc_is_over_the_counts_present_and_weighs_them_equally():
    m = CountMetrics([1, 2, 3])
    # nine images of count 2, all right; one of count 3, wrong; no image of count 1
    m.update(torch.tensor([1] * 9 + [1]), torch.tensor([1] * 9 + [2]))
    out = m.compute()
    assert math.isclose(out["acc"], 0.9, abs_tol=1e-6)
    assert math.isclose(out["macro_acc"], 0.5, abs_tol=1e-6)  # (1 + 0) / 2, count 1 absent
