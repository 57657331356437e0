"""Heads over the backbone's output: how raw outputs become a distribution over the counts.

Every head turns the network's raw output into per-count log-scores whose softmax is the
probability of each count, so inference, calibration, ONNX export and the metrics never need
to know which head a model was trained with (softmax of log-probabilities is the identity).

- `classify`: one logit per count, cross-entropy. Knows nothing of order.
- `ordinal`: one score f and ordered thresholds t_1 < ... < t_{K-1} (a cumulative link, or
  proportional-odds, model): P(count > c_k) = sigmoid(f - t_k). Counts are ordered by
  construction, so a mistake is more likely off by one than off by three.
- `regress`: one number, the count itself, fitted with a Huber loss; its distribution is a
  discretised Gaussian around it (width `sigma`), so the argmax is the nearest count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bincount.errors import BincountError

KINDS = ("classify", "ordinal", "regress")
GAP = 3.0  # the ordinal head's initial distance between thresholds, in logits


class ClassifyHead(nn.Module):
    def __init__(self, counts: list[int]):
        super().__init__()
        self.n_outputs = len(counts)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def loss(self, raw: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(raw, y, label_smoothing=smoothing)


def _smoothed_nll(log_probs: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    nll = F.nll_loss(log_probs, y)
    if not smoothing:
        return nll
    return (1 - smoothing) * nll - smoothing * log_probs.mean(1).mean()


class OrdinalHead(nn.Module):
    def __init__(self, counts: list[int]):
        super().__init__()
        self.n_outputs = 1
        k = len(counts)
        if k < 2:
            raise BincountError("head=ordinal needs at least two counts (data.counts)")
        # t_1 = first, t_k = t_1 + sum of softplus(gaps): increasing for any parameter values.
        # Gaps start at GAP logits: a middle count is then the likeliest while f lies between
        # its two thresholds (with gaps of 1 it never is, and 2 and 4 would never be answered).
        self.first = nn.Parameter(torch.tensor(-GAP * (k - 2) / 2.0))
        self.gaps = nn.Parameter(torch.full((k - 2,), math.log(math.expm1(GAP))))

    def thresholds(self) -> torch.Tensor:
        steps = F.softplus(self.gaps)
        return torch.cat([self.first.view(1), self.first + torch.cumsum(steps, 0)])

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        above = torch.sigmoid(raw[:, :1] - self.thresholds())  # P(count > c_k), decreasing in k
        ones, zeros = torch.ones_like(above[:, :1]), torch.zeros_like(above[:, :1])
        probs = torch.cat([ones, above], 1) - torch.cat([above, zeros], 1)
        return probs.clamp_min(1e-7).log()

    def loss(self, raw: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return _smoothed_nll(self(raw), y, smoothing)


class RegressHead(nn.Module):
    def __init__(self, counts: list[int], sigma: float = 0.5):
        super().__init__()
        self.n_outputs = 1
        self.register_buffer("values", torch.tensor(counts, dtype=torch.float32), persistent=False)
        self.sigma = sigma
        self.center = float(sum(counts)) / len(counts)  # a zero output means the middle count

    def count(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:, :1] + self.center

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return (-((self.values - self.count(raw)) ** 2) / (2 * self.sigma**2)).log_softmax(1)

    def loss(self, raw: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return F.huber_loss(self.count(raw)[:, 0], self.values[y])


def build(kind: str, counts: list[int]) -> nn.Module:
    heads = {"classify": ClassifyHead, "ordinal": OrdinalHead, "regress": RegressHead}
    if kind not in heads:
        raise BincountError(f"model.net.head={kind!r} is not a head: use one of {', '.join(KINDS)}")
    return heads[kind](counts)
