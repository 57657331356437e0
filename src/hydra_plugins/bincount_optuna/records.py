"""What both sweepers (the grid and Optuna) check before the first trial and write as they go:
each trial's config checked by `bincount.validate` (a bad value refused before anything trains),
a failed trial's error.txt, and the sweep folder's trials.csv and summary (best trial, its
parameters, the command that reproduces it)."""

from __future__ import annotations

import csv
import io
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def sweep_said(sweep, arguments: list[str]) -> Any:
    """`sweep(arguments)`, a BincountError said in one line as train.py says it (exit 2, no
    traceback): the `sweep` of both sweepers."""
    from bincount.errors import BincountError

    try:
        return sweep(arguments)
    except BincountError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def check_trials(config_loader, master: DictConfig, trials: list[list[str]], labels: list[str]):
    """Compose every trial's config and check its numbers (bincount.validate): a BincountError
    naming the first bad trial, before any trial trains."""
    from bincount.errors import BincountError
    from bincount.validate import check_train_config

    for i, (overrides, label) in enumerate(zip(trials, labels, strict=True)):
        where = f"trial {i} of {len(trials)} ({label})" if label else f"trial {i}"
        try:
            check_train_config(config_loader.load_sweep_config(master, list(overrides)))
        except BincountError as e:
            raise BincountError(f"{where}: {e} (nothing was trained)") from None
        except HydraException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BincountError(f"{where}: {first} (nothing was trained)") from None


def folder(ret: JobReturn) -> Path | None:
    """The trial's run folder."""
    out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
    return Path(out) if out else None


def completed(ret: JobReturn) -> bool:
    return ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, int | float)


def failure(ret: JobReturn) -> str:
    """Why a trial failed, one line; written to its folder's error.txt (what compare lists)."""
    from bincount import rundir
    from bincount.errors import BincountError

    error = ret._return_value
    if ret.status == JobStatus.COMPLETED:
        line = f"returned {error!r}, not a number: train() must return the objective"
        details = ""
    elif isinstance(error, BaseException):
        details = "".join(traceback.format_exception(error))
        while isinstance(error, InstantiationException) and error.__cause__ is not None:
            error = error.__cause__  # Hydra's "Error in call to target ...": say the cause
        kind = "error" if isinstance(error, BincountError) else type(error).__name__
        text = " ".join(str(error).split()) or "(no message)"
        line = f"{kind}: {text}"
    else:
        line, details = f"failed: {error!r}", ""
    where = folder(ret)
    if where is not None and where.is_dir():
        rundir.write_error(where, line, details)
    return line


def write_trials(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """trials.csv: one row per trial (number, state, objective, parameters, error)."""
    from bincount.fileio import atomic_write_text

    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    if "error" in fields:  # last: the longest
        fields = [f for f in fields if f != "error"] + ["error"]
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(sweep_dir / "trials.csv", buf.getvalue())


def write_summary(sweep_dir: Path, file: str, summary: dict[str, Any]) -> Path:
    from bincount.fileio import atomic_write_text

    if "best_trial" in summary:
        log.info(
            "best: trial %d %s=%.4f %s",
            summary["best_trial"],
            summary["metric"],
            summary["best_value"],
            summary.get("best_params"),
        )
        if summary.get("reproduce"):
            log.info("reproduce it: %s", summary["reproduce"])
    text = OmegaConf.to_yaml(OmegaConf.create(summary))
    return atomic_write_text(sweep_dir / file, text)


def no_trial_completed(sweep_dir: Path) -> None:
    print(
        f"error: no trial of the sweep completed: see error.txt in the trial folders of "
        f"{sweep_dir} (`bincount compare {sweep_dir}` lists them)",
        file=sys.stderr,
    )
    sys.exit(1)
