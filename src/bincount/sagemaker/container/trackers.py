"""The trackers' files of a job: TensorBoard streamed to S3 during the job, every tracker's
folder packed into the job's output at the end (so `bincount pull` brings them home).

- TensorBoard: a training job created with a TensorBoardOutputConfig finds SageMaker's
  `tensorboardoutputconfig.json` (`{"LocalPath": "/opt/ml/output/tensorboard", ...}`) in its
  input config folder (SM_INPUT_CONFIG_DIR, set by AWS's container code; smdebug's
  TENSORBOARD_CONFIG_FILE_PATH wins when set). SageMaker syncs LocalPath to
  <S3OutputPath>/<job>/tensorboard-output/ while the job runs, so the TensorBoard logger writes
  there. (A tuning job's trials have no TensorBoardOutputConfig in SageMaker's API: their events
  come home in output.tar.gz.)
- At the end, into SM_OUTPUT_DATA_DIR (output.tar.gz): the TensorBoard folder, W&B's offline
  runs (`<run>/wandb`), MLflow's local store (`mlruns/` of a file store, or the SQLite file and
  its artifacts under `mlflow/`). A remote MLflow (a server, SageMaker's managed MLflow by ARN)
  has its runs already.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger("bincount")
CONFIG_FILE = "tensorboardoutputconfig.json"
TENSORBOARD = "tensorboard"


def tensorboard_local_path(env: Mapping[str, str]) -> Path | None:
    """LocalPath of the job's TensorBoardOutputConfig, or None (none asked for, or not in a job)."""
    path = env.get("TENSORBOARD_CONFIG_FILE_PATH")
    if not path and env.get("SM_INPUT_CONFIG_DIR"):
        path = str(Path(env["SM_INPUT_CONFIG_DIR"]) / CONFIG_FILE)
    if not path or not Path(path).is_file():
        return None
    local = json.loads(Path(path).read_text()).get("LocalPath") or "/opt/ml/output/tensorboard"
    return Path(local)


def _loggers(cfg: DictConfig, kind: str) -> list[DictConfig]:
    node = cfg.get("logger") or {}
    return [
        v
        for v in node.values()
        if isinstance(v, DictConfig) and str(v.get("_target_", "")).endswith(kind)
    ]


def point_tensorboard(cfg: DictConfig, local_path: Path | None) -> bool:
    """Make the TensorBoard logger write under SageMaker's LocalPath (streamed to S3)."""
    if local_path is None:
        return False
    found = _loggers(cfg, "TensorBoardLogger")
    for node in found:
        node.save_dir = str(local_path)
    if found:
        log.info("TensorBoard events to %s (streamed to S3 by SageMaker)", local_path)
    return bool(found)


def _copy(src: Path, dest: Path) -> Path | None:
    if src.is_dir() and any(src.iterdir()):
        shutil.copytree(src, dest, dirs_exist_ok=True)
        return dest
    if src.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        return dest
    return None


def folders(cfg: DictConfig, run: Path) -> dict[str, Path]:
    """Name in the output -> the tracker folder or file of this run that exists."""
    out: dict[str, Path] = {}
    for node in _loggers(cfg, "TensorBoardLogger"):
        save_dir = Path(str(node.get("save_dir") or run))
        name = str(node.get("name") or "")
        out[TENSORBOARD] = save_dir / name if name else save_dir
    for node in _loggers(cfg, "WandbLogger"):
        out["wandb"] = Path(str(node.get("save_dir") or run)) / "wandb"
    for node in _loggers(cfg, "MLFlowLogger"):
        uri = str(node.get("tracking_uri") or "")
        if uri.startswith("file:"):
            out["mlruns"] = Path(uri.removeprefix("file://").removeprefix("file:"))
        elif uri.startswith("sqlite:///"):
            out["mlflow/mlflow.db"] = Path(uri.removeprefix("sqlite:///"))
            if node.get("artifact_location"):
                location = str(node.artifact_location).removeprefix("file://")
                out["mlflow/mlartifacts"] = Path(location)
        elif uri and "://" not in uri and not uri.startswith("arn:"):
            out["mlruns"] = Path(uri)
    return out


def pack(cfg: DictConfig, run: Path, dest: Path | None) -> list[str]:
    """Copy the trackers' folders into `dest` (SM_OUTPUT_DATA_DIR); the names copied."""
    if dest is None:
        return []
    copied = []
    for name, src in folders(cfg, run).items():
        if _copy(src, dest / name) is not None:
            copied.append(name)
    if copied:
        log.info("trackers packed into the job's output: %s", ", ".join(copied))
    return copied
