"""Count metrics: accuracy (overall and per count), RMSE/MAE of the count, off-by-one, confusion.

`macro_acc` is the mean of the per-count accuracies over the counts present in the targets:
the accuracy of a balanced stream of bins, whatever the split's mix (`acc` weighs each count
by how often it occurs, so a model can buy it by giving up the rare counts).

Labels inside the model are classes 0..K-1; RMSE, MAE and off-by-one are computed on the counts
those classes stand for, from the argmax class.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix


class CountMetrics(nn.Module):
    def __init__(self, counts: list[int]):
        super().__init__()
        k = len(counts)
        self.counts = list(counts)
        self.register_buffer("values", torch.tensor(counts, dtype=torch.float32), persistent=False)
        self.acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.per_count = MulticlassAccuracy(num_classes=k, average="none")
        self.rmse = MeanSquaredError(squared=False)
        self.mae = MeanAbsoluteError()
        self.off_by_one = MeanMetric()
        self.confusion = MulticlassConfusionMatrix(num_classes=k)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """`preds` and `target` are class indices."""
        pc, tc = self.values[preds], self.values[target]
        self.acc.update(preds, target)
        self.per_count.update(preds, target)
        self.rmse.update(pc, tc)
        self.mae.update(pc, tc)
        self.off_by_one.update(((pc - tc).abs() <= 1).float())
        self.confusion.update(preds, target)

    def compute(self) -> dict[str, float]:
        out = {
            "acc": self.acc.compute().item(),
            "rmse": self.rmse.compute().item(),
            "mae": self.mae.compute().item(),
            "off_by_one": self.off_by_one.compute().item(),
        }
        out["macro_acc"] = self.macro_acc()
        for count, value in zip(self.counts, self.per_count.compute().tolist(), strict=True):
            out[f"acc_count_{count}"] = value
        return out

    def macro_acc(self) -> float:
        """Mean over the counts that occur of the share of their images predicted right."""
        cm = self.confusion.compute().double()
        support = cm.sum(dim=1)
        present = support > 0
        if not present.any():
            return 0.0
        return float((cm.diagonal()[present] / support[present]).mean())

    def confusion_matrix(self) -> list[list[int]]:
        """Rows are true counts, columns predicted counts, in the order of `counts`."""
        return self.confusion.compute().long().tolist()

    def reset(self) -> None:
        for m in (self.acc, self.per_count, self.rmse, self.mae, self.off_by_one, self.confusion):
            m.reset()
