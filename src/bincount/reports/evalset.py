"""The images and true counts of one split of a run, exactly as its training split them."""

from __future__ import annotations

import logging
from pathlib import Path

from bincount import rundir
from bincount.config.hydra import instantiate
from bincount.errors import BincountError

log = logging.getLogger(__name__)


def split_items(run: Path, split: str) -> list[tuple[Path, int]]:
    """[(image path, true count)] of `split` (train, val, test) from the run's config.yaml."""
    cfg = rundir.read_config(run)
    config = rundir.config_path(run)
    if cfg is None:
        raise BincountError(
            f"{config} is missing: give the run folder written by `python train.py` "
            "(its config.yaml says where the data and the split are)"
        )
    if "data" not in cfg:
        raise BincountError(f"{config} has no data section: is it a bincount run?")
    if "resize" not in cfg.data:  # written before splits were a hash of id and seed
        log.warning(
            "%s was trained before splits became a hash of id and seed: its %s split is made "
            "with today's rule and may hold photos it trained on; retrain it, or evaluate on "
            "photos it never saw (--data)",
            run,
            split,
        )
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    if split not in datamodule.datasets:
        raise BincountError(f"unknown split {split!r}: use train, val or test")
    ds = datamodule.datasets[split]
    if not len(ds):
        raise BincountError(f"the {split} split of {run} is empty: nothing to evaluate")
    # each photo from its own source (a run's data may list several)
    return [(path, datamodule.counts[t]) for path, t in zip(ds.paths, ds.targets, strict=True)]
