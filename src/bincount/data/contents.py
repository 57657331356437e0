"""What a bin's metadata says beyond the count: auxiliary targets for training.

Each metadata file lists the products in the bin (BIN_FCSKU_DATA: quantity, length, width,
height in inches, weight in pounds). Three figures summarise how full the bin is:

- `log_volume`: log(1 + the products' total volume, in cubic inches),
- `log_weight`: log(1 + their total weight, in pounds),
- `distinct`: how many different products (ASINs) there are.

They are targets of an auxiliary head during training only (`model.net.aux`, weighted by `model.aux_weight`); a photo alone
is what the model sees at inference. A figure that a file cannot give (a missing dimension or
weight) is NaN and left out of the loss; a photo whose metadata lists no products (a stub, as
../shared/abid-256's are) has no figure at all, and `load_paths` says how many.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from bincount.data import layout
from bincount.preprocess import AUX_TARGETS

log = logging.getLogger(__name__)
NAMES = AUX_TARGETS  # the network's auxiliary outputs predict these, in this order


def _value(item: dict, key: str) -> float:
    field = item.get(key)
    value = field.get("value") if isinstance(field, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else math.nan


def figures(meta: dict) -> list[float]:
    """[log_volume, log_weight, distinct] of one metadata dict (NaN where it cannot say)."""
    products = meta.get("BIN_FCSKU_DATA")
    if not isinstance(products, dict) or not products:
        return [math.nan] * len(NAMES)
    volume = weight = 0.0
    for item in products.values():
        item = item if isinstance(item, dict) else {}
        quantity = item.get("quantity")
        quantity = quantity if isinstance(quantity, int | float) and quantity >= 0 else math.nan
        size = _value(item, "length") * _value(item, "width") * _value(item, "height")
        volume += quantity * size
        weight += quantity * _value(item, "weight")
    return [math.log1p(volume), math.log1p(weight), float(len(products))]


def load(folder: Path, ids: list[str]) -> torch.Tensor:
    """(len(ids), 3) figures of the images' metadata files; a file that cannot be read is NaN."""
    return load_paths(ids, [layout.image_path(folder, i) for i in ids])


def load_paths(ids: list[str], images: list[Path], what: str = "photos") -> torch.Tensor:
    """`load` for photos of several sources: each id's metadata beside its image's folder.
    Photos without products (every figure NaN) are counted in one log line naming `what`."""
    rows = []
    for image_id, image in zip(ids, images, strict=True):
        try:
            meta = json.loads(layout.metadata_path(image.parent.parent, image_id).read_bytes())
        except (OSError, ValueError):
            meta = {}
        rows.append(figures(meta if isinstance(meta, dict) else {}))
    out = torch.tensor(rows, dtype=torch.float32).reshape(len(ids), len(NAMES))
    skipped = int(out.isnan().all(1).sum())
    if skipped:
        log.info(
            "auxiliary targets: %d of %d %s have no products in their metadata (stubs): "
            "skipped (left out of the auxiliary loss)",
            skipped,
            len(ids),
            what,
        )
    return out


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Each figure centred and scaled by the training split's mean and std (NaNs ignored)."""
    mean = train.nanmean(0)
    std = ((train - mean) ** 2).nanmean(0).sqrt().clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]
