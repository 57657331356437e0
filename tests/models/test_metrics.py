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
    cm = m.confusion_matrix()
    assert cm[3][0] == 1 and cm[2][4] == 1 and sum(map(sum, cm)) == 6
    m.reset()
    m.update(torch.tensor([1]), torch.tensor([1]))
    assert m.compute()["acc"] == 1.0
