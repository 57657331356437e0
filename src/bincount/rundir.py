"""The run folder: the names of what `python train.py` (and evaluate, calibrate) write into it,
and small readers and writers. Every module that reads or writes a run's files spells their
names through here. Torch-free (omegaconf only when a config is read or written).

    <run>/config.yaml               the composed config, resolved (CONFIG)
    <run>/metrics.json              objective, val/test figures, best checkpoint (METRICS)
                                    val: the kept (best) epoch's figures, best_epoch its
                                    number, last: the last epoch's; identity: name and tags
    <run>/checkpoints/best.ckpt     the checkpoint served (BEST_CKPT); last.ckpt to resume
    <run>/csv/metrics.csv           per-step/epoch figures (CSV_METRICS, in CSV_DIR)
    <run>/calibration.json          `bincount calibrate`'s thresholds (CALIBRATION)
    <run>/eval/<tag>/               `bincount evaluate`'s results (EVAL)
    <run>/members/<name>/           an ensemble's member runs (MEMBERS)
    <run>/onnx/                     `bincount export`'s ONNX model (ONNX_DIR)
    <run>/error.txt                 why a sweep trial failed: one line, then the traceback (ERROR)
    <run>/health.json               debug=health's rule verdicts (HEALTH)
    <run>/grad_norms.csv            debug=health's gradient norms per layer (GRAD_NORMS)
    <run>/profile.json              debug=profile's summary (PROFILE)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from bincount.fileio import atomic_write_json, atomic_write_text

CONFIG = "config.yaml"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
BEST = "best.ckpt"
LAST = "last.ckpt"
BEST_CKPT = f"{CHECKPOINTS}/{BEST}"
LAST_CKPT = f"{CHECKPOINTS}/{LAST}"
CSV_DIR = "csv"  # Lightning's CSVLogger: conf/logger/csv.yaml (name: csv, version: "")
CSV_METRICS = f"{CSV_DIR}/metrics.csv"
CALIBRATION = "calibration.json"
EVAL = "eval"
MEMBERS = "members"
ONNX_DIR = "onnx"  # `bincount export`'s model.onnx (and its calibration.json copy)
ERROR = "error.txt"
HEALTH = "health.json"  # debug=health: the rules' verdicts (bincount.callbacks.health)
GRAD_NORMS = "grad_norms.csv"  # debug=health: per-layer gradient norms
PROFILE = "profile.json"  # debug=profile: the step profiler's summary

if TYPE_CHECKING:
    from omegaconf import DictConfig


def config_path(run: Path) -> Path:
    return Path(run) / CONFIG


def metrics_path(run: Path) -> Path:
    return Path(run) / METRICS


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / CHECKPOINTS


def best_checkpoint(run: Path) -> Path:
    return Path(run) / BEST_CKPT


def last_checkpoint(run: Path) -> Path:
    return Path(run) / LAST_CKPT


def calibration_path(run: Path) -> Path:
    return Path(run) / CALIBRATION


def eval_dir(run: Path, tag: str) -> Path:
    return Path(run) / EVAL / tag


def member_dir(run: Path, name: str) -> Path:
    return Path(run) / MEMBERS / name


def run_folder(model_file: Path) -> Path:
    """The run folder a checkpoint or an ONNX export belongs to (where config.yaml and
    calibration.json are): the parent of checkpoints/ or onnx/, else the file's folder."""
    parent = Path(model_file).parent
    return parent.parent if parent.name in (CHECKPOINTS, ONNX_DIR) else parent


def is_run(folder: Path) -> bool:
    """A folder `python train.py` wrote (it has a config.yaml)."""
    return config_path(folder).is_file()


def read_config(run: Path) -> DictConfig | None:
    """The run's config.yaml, or None when it has none."""
    from omegaconf import DictConfig, OmegaConf

    path = config_path(run)
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    return cfg if isinstance(cfg, DictConfig) else None


def write_config(run: Path, cfg: DictConfig) -> Path:
    """config.yaml: the config, resolved."""
    from omegaconf import OmegaConf

    return atomic_write_text(config_path(run), OmegaConf.to_yaml(cfg, resolve=True))


def read_metrics(run: Path) -> dict | None:
    """The run's metrics.json, or None when it has none (crashed, or still running)."""
    path = metrics_path(run)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_metrics(run: Path, metrics: dict) -> Path:
    return atomic_write_json(metrics_path(run), metrics)


def error_path(run: Path) -> Path:
    return Path(run) / ERROR


def write_error(run: Path, line: str, details: str = "") -> Path:
    """error.txt: why the run failed, one line first (what `bincount compare` lists)."""
    text = " ".join(line.split()) + "\n" + (details.rstrip() + "\n" if details else "")
    return atomic_write_text(error_path(run), text)


def read_error(run: Path) -> str | None:
    """The first line of the run's error.txt, or None when it has none."""
    path = error_path(run)
    if not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    return lines[0] if lines else None
