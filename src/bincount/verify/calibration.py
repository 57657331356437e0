"""Temperature scaling of a run's probabilities, fitted on its validation split.

One number T divides the logits: it keeps every prediction (the argmax) and makes the
probabilities honest (`ece`: the expected calibration error, the gap between confidence and
accuracy). `calibrate(run)` also chooses the verdict thresholds of `bincount.inference.verdicts`,
fits the order-aware verifier of `bincount.verify.order_model` on the validation photos' order
stream, and writes all of it to `<run>/calibration.json`, which serving, prediction and
`bincount verify` then use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from bincount import inference, rundir
from bincount.errors import BincountError
from bincount.fileio import atomic_write_json
from bincount.inference import verdicts
from bincount.reports import evalset
from bincount.settings import settings
from bincount.verify import check

log = logging.getLogger(__name__)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    p = softmax(logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: |accuracy - confidence| per confidence bin, weighted."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the negative log-likelihood of the labels."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return float(np.clip(t, 0.05, 20.0))


def split_logits(model: inference.Model, items: list[tuple[Path, int]], batch: int = 32):
    """Raw logits and class indices of [(image path, count)], decoded as serving does."""
    size = model.preprocess["image_size"]
    unknown = sorted({c for _, c in items} - set(model.counts))
    if unknown:
        raise BincountError(f"counts {unknown} are not among the model's {model.counts}")
    out = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        images = [inference.decode_image(p.read_bytes(), size, str(p)) for p, _ in chunk]
        out.append(model.logits(torch.stack([model.transform(im) for im in images])))
    labels = np.asarray([model.counts.index(c) for _, c in items])
    return np.concatenate(out), labels


def calibrate(run: Path, verify: dict | None = None) -> dict:
    """Fit T on the run's validation split, choose thresholds, write calibration.json."""
    run = Path(run)
    verify = {**settings()["verify"], **(verify or {})}
    ckpt = inference.resolve(run, "torch")
    run = rundir.run_folder(ckpt)
    model = inference.model_fn(ckpt, backend="torch")
    items = evalset.split_items(run, "val")
    logits, labels = split_logits(model, items)
    t = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, t)
    bins = int(verify["ece_bins"])
    chosen = verdicts.choose_thresholds(
        after,
        labels,
        float(verify["target_precision"]),
        float(verify["match_precision"]),
        float(verify["mismatch_rate"]),
    )
    result = {
        "version": model.info["version"],
        "checkpoint": str(ckpt.relative_to(run)) if ckpt.is_relative_to(run) else str(ckpt),
        "split": "val",
        "images": len(items),
        "accuracy": round(float((after.argmax(1) == labels).mean()), 4),
        "temperature": round(t, 6),
        "nll_before": round(nll(logits, labels), 6),
        "nll_after": round(nll(logits, labels, t), 6),
        "ece_before": round(ece(before, labels, bins), 6),
        "ece_after": round(ece(after, labels, bins), 6),
        "thresholds": {k: chosen[k] for k in ("mismatch_below", "match_at_least")},
        "verify": verify,
        "validation": chosen["validation"],
        "orders": check.fit_verifier([p for p, _ in items], after, model.counts, verify),
    }
    atomic_write_json(run / inference.CALIBRATION, result)
    return result
