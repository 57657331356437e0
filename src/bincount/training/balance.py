"""model.net.prior=balanced, at the end of training: the per-count shift fitted on the validation
split with the kept weights (`bincount.models.shift`), set on the module for the test and
written into the kept checkpoint (atomically), so that every later answer (evaluate, predict,
serve, export) uses it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

from bincount.fileio import atomic_write_bytes

log = logging.getLogger("bincount")


def write_val_shift(ckpt: Path, shift: list[float]) -> None:
    """The checkpoint's net record with `val_shift` (a temporary file, then renamed)."""
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)  # this run's own file
    blob["hyper_parameters"]["net"]["val_shift"] = list(shift)
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(ckpt, buf.getvalue())


def balance(module, ckpt: str | None, write: bool) -> list[float] | None:
    """Fit the shift with the weights of `ckpt` (None: no kept checkpoint, nothing to do) when
    the module answers under prior=balanced; `write` (rank 0) puts it into the checkpoint."""
    if module.net.prior != "balanced":
        return None
    if not ckpt:
        log.warning("model.net.prior=balanced: no kept checkpoint, so no shift is fitted")
        return None
    from bincount.reports.evaluate import fit_val_shift, load

    shift = fit_val_shift(load(Path(ckpt)), Path(ckpt))
    module.net.set_val_shift(shift)
    if write:
        write_val_shift(Path(ckpt), shift)
    return shift
