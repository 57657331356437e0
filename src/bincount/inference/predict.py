"""`predict_fn`: counts, probabilities and verdicts from checked images and a loaded model."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from bincount.inference import verdicts
from bincount.inference.loading import Model
from bincount.inference.requests import Request, decode_image


def probabilities(model: Model, images: list[Image.Image]) -> np.ndarray:
    """Calibrated probabilities, one row per (decoded) image, one column per count."""
    x = torch.stack([model.transform(im) for im in images])
    logits = model.logits(x).astype(np.float64) / model.temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def predict_fn(request: Request, model: Model) -> dict:
    size = model.preprocess["image_size"]
    names = request.names if len(request.names) == len(request.images) else None
    images = [
        decode_image(data, size, names[i] if names else f"images[{i}]")
        for i, data in enumerate(request.images)
    ]
    probs = probabilities(model, images)
    counts = np.asarray(model.counts)
    answers = []
    for p, expected in zip(probs, request.expected, strict=True):
        best = int(p.argmax())
        answer = {
            "count": int(counts[best]),
            "probabilities": {str(c): round(float(q), 6) for c, q in zip(counts, p, strict=True)},
            "mean_count": round(float((p * counts).sum()), 4),
            "confidence": round(float(p[best]), 6),
        }
        if expected is not None:
            answer.update(verdicts.verdict(expected, p, model.counts, model.thresholds))
        answers.append(answer)
    model_info = {k: model.info[k] for k in ("name", "version", "backend", "calibrated")}
    if request.batch:
        return {"predictions": answers, "model": model_info}
    return {**answers[0], "model": model_info}
