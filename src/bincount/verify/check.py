"""Orders against a model: a split's order stream, the order verifier fitted on validation
orders, and the verdicts (photo-only and order-aware) on an order file, scored when its
answer key is given. The verdicts themselves are computed from the photo and the stated order
alone (`order_model.answer`, `verdicts.verdict`); the truth is read only to score them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np

from bincount import inference, rundir
from bincount.errors import BincountError
from bincount.fileio import atomic_write_text, read_input
from bincount.inference import verdicts
from bincount.reports import evalset
from bincount.verify import order_model, orders

log = logging.getLogger(__name__)

# Draws of the validation order stream the verifier is fitted on (each photo ~REPEATS times).
REPEATS = 10
MIN_BINS = 5


def split_bins(run: Path, split: str) -> list[orders.Bin]:
    """The bins (photo + line items from its metadata) of a run's split; photos whose metadata
    has no usable line items are left out, with a log line."""
    items = evalset.split_items(Path(run), split)
    bins = [orders.read_bin(path.resolve()) for path, _ in items]
    kept = [b for b in bins if b is not None]
    if len(kept) < len(bins):
        log.info(
            "%d of %d %s photos have no line items: left out",
            len(bins) - len(kept),
            len(bins),
            split,
        )
    if not kept:
        raise BincountError(f"no photo of the {split} split of {run} has line items in metadata")
    return kept


def write_stream(run: Path, split: str, output: Path, error_rate: float, seed: int):
    """Write the split's orders: JSON lines plus `<name>.truth.jsonl`, or with a .csv output a
    flat list (id, path, count, expected = stated total) for `bincount predict --expected-column`.
    Returns (paths written, the (order, truth) pairs)."""
    pairs = orders.stream(split_bins(run, split), error_rate, seed, prefix=split)
    output = Path(output)
    if output.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["id", "path", "count", "expected"])
        for order, truth in pairs:
            writer.writerow([order.id, order.image, truth.true_total, order.total])
        return [atomic_write_text(output, buf.getvalue())], pairs
    return list(orders.write(output, pairs)), pairs


def fit_verifier(paths: list[Path], probs: np.ndarray, counts: list[int], verify: dict):
    """The order verifier fitted on REPEATS draws of the order stream over these (validation)
    photos with their calibrated probabilities; None when too few photos have line items."""
    row = {str(Path(p).resolve()): i for i, p in enumerate(paths)}
    bins = [b for b in (orders.read_bin(Path(p).resolve()) for p in paths) if b is not None]
    if len(bins) < MIN_BINS:
        log.warning("only %d validation photos have line items: no order verifier", len(bins))
        return None
    rate = float(verify["mismatch_rate"])
    x, wrong = [], []
    for r in range(REPEATS):
        for order, truth in orders.stream(bins, rate, seed=r, prefix=f"val{r}"):
            x.append(order_model.features(probs[row[order.image]], counts, order))
            wrong.append(truth.wrong)
    if all(wrong) or not any(wrong):
        log.warning("the validation orders are all right or all wrong: no order verifier")
        return None
    verifier = order_model.fit(
        np.asarray(x),
        np.asarray(wrong),
        float(verify["target_precision"]),
        float(verify["match_precision"]),
    )
    return {
        **verifier,
        "fitted_on": {"split": "val", "photos": len(bins), "draws": REPEATS, "error_rate": rate},
    }


def load_verifier(model: inference.Model, model_path) -> dict:
    """The order verifier in the model's calibration.json (same model version), found where
    `inference.model_fn` finds the temperature."""
    model_file = inference.resolve(model_path, model.info["backend"])
    run = rundir.run_folder(model_file)
    path = model_file.parent / inference.CALIBRATION  # an export's copy first, as model_fn
    if not path.is_file():
        path = run / inference.CALIBRATION
    fix = f"run `bincount calibrate {run}`"
    if not path.is_file():
        raise BincountError(f"{path} is missing: {fix}")
    cal = json.loads(path.read_text())
    if cal.get("version") != model.info["version"]:
        raise BincountError(f"{path} is for another version of the model: {fix}")
    if not cal.get("orders"):
        raise BincountError(f"{path} has no order verifier: {fix} (with line items in metadata)")
    return cal["orders"]


def _probabilities(model: inference.Model, stated: list[orders.Order], batch: int) -> np.ndarray:
    size = model.preprocess["image_size"]
    out = []
    for i in range(0, len(stated), batch):
        images = []
        for order in stated[i : i + batch]:
            path = Path(order.image)
            if not path.exists():
                raise BincountError(f"order {order.id}: its photo {path} does not exist")
            data = read_input(path, f"order {order.id}: its photo")  # a file, size-capped
            images.append(inference.decode_image(data, size, str(path)))
        out.append(inference.probabilities(model, images))
    return np.concatenate(out)


def verify(model_path, orders_path: Path, output: Path, backend=None, batch: int = 16) -> list:
    """Both verdicts for every order of `orders_path`, written as JSON lines to `output`."""
    stated = orders.read(orders_path)
    model = inference.model_fn(model_path, backend=backend)
    verifier = load_verifier(model, model_path)
    probs = _probabilities(model, stated, batch)
    rows = []
    for order, p in zip(stated, probs, strict=True):
        photo = verdicts.verdict(order.total, p, model.counts, model.thresholds)
        aware = order_model.answer(verifier, p, model.counts, order)
        rows.append(
            {
                "id": order.id,
                "image": order.image,
                "stated_total": order.total,
                "count": model.counts[int(p.argmax())],
                "p_expected": photo["p_expected"],
                "photo_verdict": photo["verdict"],
                "p_match": aware["p_match"],
                "verdict": aware["verdict"],
            }
        )
    atomic_write_text(output, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def score(rows: list[dict], truth: dict[str, orders.Truth]) -> dict:
    """{photo-only: table, order-aware: table} of the verdicts against the answer key."""
    missing = [r["id"] for r in rows if r["id"] not in truth]
    if missing:
        raise BincountError(
            f"{len(missing)} orders (first {missing[0]}) are not in the truth file: give the "
            "truth file written with these orders"
        )
    wrong = np.asarray([truth[r["id"]].wrong for r in rows])
    out = {}
    for name, key, p in (
        ("photo-only", "photo_verdict", "p_expected"),
        ("order-aware", "verdict", "p_match"),
    ):
        t = verdicts.evaluate([r[key] for r in rows], list(wrong))
        t["decided"] = round(1.0 - t["share_unsure"], 4)
        q = np.asarray([r[p] or 0.0 for r in rows])
        t["ece"] = round(_ece(q, ~wrong), 4)
        out[name] = t
    return out


def _ece(q: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Calibration error of q = P(order is right): |share right - mean q| per bin of q,
    weighted by the bin's share of orders."""
    which = np.clip((q * bins).astype(int), 0, bins - 1)
    return float(
        sum(
            (which == b).mean() * abs(right[which == b].mean() - q[which == b].mean())
            for b in range(bins)
            if (which == b).any()
        )
    )
