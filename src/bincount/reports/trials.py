"""The runs below some folders, as `bincount compare` reads them: found, read (finished or
failed), what each was launched with, and what varies among them. Torch- and matplotlib-free.

A run is a folder with a config.yaml (what `python train.py` writes as it starts) or, for a
sweep trial that failed before that, a Hydra job folder (`.hydra/config.yaml`). What a run was
launched with comes from `.hydra/overrides.yaml` (the command line) and `.hydra/hydra.yaml` (the
config groups chosen); a run without them (e.g. a SageMaker job's) is read from its config.yaml.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from bincount import rundir

HYDRA = ".hydra"
SKIP = {
    rundir.CHECKPOINTS,
    rundir.CSV_DIR,
    "tensorboard",
    "wandb",
    "mlruns",
    HYDRA,
    "compare",
    rundir.ONNX_DIR,
}
#: shown when nothing varies, and compared even when no command line names them
MAIN = (
    "model.net.backbone",
    "model.net.head",
    "lr",
    "batch_size",
    "data.image_size",
    "trainer.max_epochs",
)
#: keys that say where a run wrote, or how a sweep was driven: never "what varies"
IGNORED = ("hydra", "paths", "sweep", "ckpt_path")
#: overrides that only drive a sweep: left out of the command that reproduces one of its runs
_ABSENT = object()
SWEEP_ONLY = re.compile(r"^[+~]*(hydra[./]|sweep[.=])")


@dataclass
class Trial:
    path: Path
    config: DictConfig  # config.yaml; .hydra/config.yaml (unresolved) if it failed before that
    overrides: list[str] | None  # the command line (.hydra/overrides.yaml); None: not recorded
    choices: dict[str, str] = field(default_factory=dict)  # config group -> option chosen
    started: float = 0.0  # seconds since the epoch
    metrics: dict | None = None  # metrics.json; None: failed, or still running
    error: str | None = None  # why it failed, one line (error.txt, or train.log's last error)


def find(folder: Path) -> list[Path]:
    """Every run folder at or below `folder` (not descending into runs)."""
    found = []
    for here, dirs, _files in os.walk(folder):
        if rundir.is_run(Path(here)) or (
            HYDRA in dirs and (Path(here) / HYDRA / "config.yaml").is_file()
        ):
            found.append(Path(here))
            dirs.clear()
        else:
            dirs[:] = sorted(d for d in dirs if d not in SKIP)
    return found


def _load(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def started(path: Path) -> float:
    """When the run started: the first of its files Hydra or train() wrote as it began."""
    times = [
        p.stat().st_mtime
        for p in (
            path / HYDRA / "hydra.yaml",
            path / HYDRA / "config.yaml",
            rundir.config_path(path),
        )
        if p.is_file()
    ]
    return min(times) if times else path.stat().st_mtime


def error_line(path: Path) -> str | None:
    """Why a run failed: error.txt (what the sweepers write), else the last ERROR line of its
    log (`<task>.log`)."""
    said = rundir.read_error(path)
    if said:
        return said
    for log in sorted(path.glob("*.log")):
        errors = [
            line for line in log.read_text(errors="replace").splitlines() if "[ERROR]" in line
        ]
        if errors:
            return errors[-1].split("[ERROR]", 1)[1].strip() or None
    return None


def read(path: Path) -> Trial:
    config = rundir.read_config(path)
    if config is None:  # a trial that failed before train() wrote its config.yaml
        hydra_config = path / HYDRA / "config.yaml"
        config = OmegaConf.load(hydra_config) if hydra_config.is_file() else None
    if not isinstance(config, DictConfig):
        config = OmegaConf.create({})
    overrides = _load(path / HYDRA / "overrides.yaml")
    hydra = _load(path / HYDRA / "hydra.yaml") or {}
    choices = ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    metrics = rundir.read_metrics(path)
    return Trial(
        path=path,
        config=config,
        overrides=[str(o) for o in overrides] if isinstance(overrides, list) else None,
        choices={str(k): str(v) for k, v in choices.items() if not str(k).startswith("hydra/")},
        started=started(path),
        metrics=metrics,
        error=None if metrics is not None else error_line(path),
    )


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _override_value(trial: Trial, key: str):
    for o in reversed(trial.overrides or []):
        if override_key(o) == key:
            if o.startswith("~"):
                return "(deleted)"
            text = o.split("=", 1)[1] if "=" in o else ""
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                return text
    return None


def _select(trial: Trial, key: str):
    value = OmegaConf.select(trial.config, key, default=_ABSENT, throw_on_resolution_failure=False)
    return _ABSENT if isinstance(value, DictConfig) else value  # a node: a group's, not a value


def setting(trial: Trial, key: str):
    """The value of `key` in a run: the config group's option for a group, else the config's
    value (resolved where it can be), else what the command line said; None when unknown."""
    if key in trial.choices:
        return trial.choices[key]
    value = _select(trial, key)
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    if value is _ABSENT or value is None or (isinstance(value, str) and value.startswith("${")):
        said = _override_value(trial, key)
        return said if said is not None else (None if value is _ABSENT else value)
    return value


def known(trial: Trial, key: str) -> bool:
    """Whether the run says what `key` was (a run without .hydra does not name its groups)."""
    if key in trial.choices or _override_value(trial, key) is not None:
        return True
    return _select(trial, key) is not _ABSENT


def _ignored(key: str) -> bool:
    return key.split(".", 1)[0].split("/", 1)[0] in IGNORED


def _same(value) -> str:
    return (
        repr(float(value))
        if isinstance(value, int | float) and not isinstance(value, bool)
        else repr(value)
    )


def varying(trials: list[Trial]) -> list[str]:
    """The keys whose value differs among the runs: every key a command line set or a config
    group chosen, and the main ones (MAIN), in the order the command lines name them. A key
    below a group that varies in the same way (model.net.backbone under model) is left out."""
    keys: list[str] = []
    for t in trials:
        keys += [override_key(o) for o in t.overrides or []]
    for t in trials:
        keys += list(t.choices)
    keys += list(MAIN)
    keys = [k for k in dict.fromkeys(keys) if k and not _ignored(k)]
    parts: dict[str, tuple] = {}
    for key in keys:
        values = [_same(setting(t, key)) if known(t, key) else None for t in trials]
        if len(set(values) - {None}) > 1:  # None: the run does not say
            index = {v: i for i, v in enumerate(dict.fromkeys(values))}
            parts[key] = tuple(index[v] for v in values)
    out = []
    for key, part in parts.items():
        group = key.split(".", 1)[0]
        if "." in key and group in parts and parts[group] == part:
            continue
        out.append(key)
    return out


def reproduce(overrides: list[str]) -> str:
    """The command that trains the same run again (a sweep's own settings left out)."""
    kept = [o for o in overrides if not SWEEP_ONLY.match(o)]
    return " ".join(["python train.py", *(shlex.quote(o) for o in kept)])
