"""Frozen-backbone features, computed once per data and backbone setting and cached.

With the backbone frozen, every epoch of every sweep trial pushes the same images through the
same backbone. `load_or_extract` does it once: each split's images (evaluation transform, no
augmentation) go through the backbone up to the classifier's input (timm's
`forward_head(pre_logits=True)`, i.e. after global pooling), and the vectors are saved under
`<cache_dir>/features/`. `bincount.training.head_only` then trains only the head on them, in
seconds a trial.

The cache key holds the backbone, its weights (pretrained, or a weights file and its mtime),
the preprocessing (size, mean, std) and the manifest rows (ids, counts, splits): anything else
is another file. The file is written under a temporary name and renamed.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bincount.data import manifest, transforms
from bincount.fileio import atomic_write_bytes

log = logging.getLogger(__name__)
FORMAT = 1


def cache_key(hparams: dict, preprocess: dict, rows: list[manifest.Row]) -> str:
    weights = hparams.get("weights")
    if weights and Path(weights).is_file():
        weights = f"{Path(weights).resolve()}@{Path(weights).stat().st_mtime_ns}"
    spec = {
        "format": FORMAT,
        "backbone": hparams["backbone"],
        "pretrained": bool(hparams.get("pretrained", True)),
        "weights": weights,
        "preprocess": preprocess,
        "rows": [[r.id, r.count, r.split] for r in rows],
    }
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def pooled(net: torch.nn.Module, x: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """The backbone's output at the classifier's input: (N, num_features)."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return net.forward_head(net.forward_features(x), pre_logits=True)


def extract(module, datamodule) -> dict[str, dict[str, torch.Tensor]]:
    """{split: {"x": features (N, D) float32, "y": class indices (N,)}} for every split."""
    module.eval()
    eval_tf = transforms.build(datamodule.preprocess, train=False)
    out = {}
    for split, ds in datamodule.datasets.items():
        ds = copy.copy(ds)
        ds.transform = eval_tf
        loader = DataLoader(ds, batch_size=64, num_workers=datamodule.num_workers)
        xs, ys = [], []
        with torch.inference_mode():
            for x, y in loader:
                xs.append(pooled(module.net.net, x, module.net.channels_last).float())
                ys.append(torch.as_tensor(y))
        if xs:
            out[split] = {"x": torch.cat(xs), "y": torch.cat(ys)}
        else:
            out[split] = {
                "x": torch.zeros(0, module.net.net.num_features),
                "y": torch.zeros(0).long(),
            }
    return out


def load_or_extract(module, datamodule, cache_dir: str | Path) -> tuple[dict, dict]:
    """The features of every split (extracted now or read from the cache) and the cache's info:
    {"path", "built": bool, "extract_seconds", "images"}."""
    datamodule.setup()
    rows = [
        manifest.Row(i, datamodule.counts[t], split)
        for split, ds in datamodule.datasets.items()
        for i, t in zip(ds.ids, ds.targets, strict=True)
    ]
    pre = dict(datamodule.preprocess)  # what the pixels are made of, whatever the model says
    key = cache_key(module.net.config, pre, rows)
    name = f"{module.net.backbone_name}-{pre['image_size']}px-{key}.pt"
    path = Path(cache_dir) / "features" / name
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        info = {**blob["info"], "path": str(path), "built": False}
        log.info("features: read %s", path)
        return blob["splits"], info
    log.info("features: extracting %d images with the frozen %s", len(rows), name.split("-")[0])
    start = time.perf_counter()
    splits = extract(module, datamodule)
    seconds = time.perf_counter() - start
    info = {"extract_seconds": round(seconds, 2), "images": len(rows)}
    buf = io.BytesIO()
    torch.save({"splits": splits, "info": info}, buf)
    atomic_write_bytes(path, buf.getvalue())
    log.info("features: %d images in %.1f s -> %s", len(rows), seconds, path)
    return splits, {**info, "path": str(path), "built": True}
