"""One identity per run, the same in every tracker: a readable name and a few tags.

    grid-211238/3 lr=0.01 batch_size=16      trial 3 of the grid launched at 21:12:38
    hpo-093015/0 lr=0.002161 batch_size=8    trial 0 of an Optuna sweep (hydra/sweeper=optuna)
    bincount-hpo-261201-2123/4 lr=0.03       trial 4 of a SageMaker tuning job
    run-1201-211238 model=resnet18           a single run: its time and its overrides

The name holds the sweep, the trial number and the overrides that vary among the sweep's trials
(the grid's `a,b` values on the command line, the Optuna sweep's `sweep.params`, the tuning
job's tuned hyperparameters); a single run shows its own command-line overrides instead. The
tags say which sweep and trial, the git commit, the data (a fingerprint of the manifest rows
trained and validated on, known once the data is loaded) and where it ran (`local`, or the
SageMaker training job's name). Torch-free: `from_context` reads Hydra's runtime config, the
command line and the environment; `identify` takes them as arguments (tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Overrides that say where things are or how they are watched, not what is trained: left out
# of a single run's name.
WHERE_PREFIXES = ("paths.", "hydra.", "logger.")
WHERE_KEYS = {"logger", "data.source", "data.cache_dir", "data.file_list", "data.num_workers"}
WHERE_KEYS |= {"ckpt_path", "trainer.enable_progress_bar"}
MAX_NAME = 120
# SageMaker names a tuning job's training jobs <tuning job>-<3-digit trial>-<8 hex digits>.
TUNING_TRIAL = re.compile(r"^(?P<sweep>.+)-(?P<trial>\d{3})-[0-9a-f]{8}$")
_TIME_FOLDER = re.compile(r"^\d\d-\d\d-\d\d$")


@dataclass(frozen=True)
class Identity:
    name: str  # readable, unique within a sweep: "grid-211238/3 lr=0.01 batch_size=16"
    sweep: str | None  # "grid-211238", a tuning job's name; None for a single run
    sweep_key: str | None  # what tells sweeps apart: the sweep folder, or the tuning job
    trial: int | None
    varying: dict[str, str] = field(default_factory=dict)  # key -> value as shown in the name
    where: str = "local"  # or the SageMaker training job's name
    git_commit: str | None = None
    data: str | None = None  # the data fingerprint, once the data is loaded

    @property
    def folder(self) -> str:
        """The name as one folder name (TensorBoard's run folder)."""
        return self.name.replace("/", "_")

    @property
    def job_type(self) -> str:
        return "trial" if self.sweep else "train"

    def tags(self) -> dict[str, str]:
        """Every tag that is known, as strings (not `sweep_key`: a path, or a job's name)."""
        out = {
            "sweep": self.sweep,
            "trial": None if self.trial is None else str(self.trial),
            "git_commit": self.git_commit,
            "data": self.data,
            "where": self.where,
        }
        return {k: v for k, v in out.items() if v is not None}

    def with_data(self, fingerprint: str) -> Identity:
        return replace(self, data=fingerprint)


def show(value) -> str:
    """A value as the name shows it: floats in 4 significant digits (0.002161), else str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if re.fullmatch(r"-?\d+", value.strip()):
            return value.strip()
        return f"{number:.4g}"
    return str(value)


def _split(override: str) -> tuple[str, str] | None:
    """'++lr=0.01' -> ('lr', '0.01'); None for what is not key=value (a deletion `~key`)."""
    if override.startswith("~") or "=" not in override:
        return None
    key, value = override.split("=", 1)
    return key.lstrip("+"), value


def swept_keys(argv: Sequence[str]) -> list[str]:
    """The keys a Hydra command line sweeps (`lr=0.001,0.01`, `model=glob(*)`, ranges)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:  # not ours to judge: Hydra has said what is wrong with them already
        return []
    return [o.key_or_group for o in parsed if o.is_sweep_override()]


def tuned_keys(argv: Sequence[str]) -> list[str]:
    """The keys a SageMaker job gets as `--key value` besides `--bincount_overrides` and
    SageMaker's own (`sagemaker_*`, `_tuning_objective_metric`): a tuning job's tuned ones."""
    keys = [a[2:] for a in argv if a.startswith("--") and len(a) > 2]
    return [k for k in keys if k != "bincount_overrides" and not k.startswith(("sagemaker_", "_"))]


def _is_where(key: str) -> bool:
    return key in WHERE_KEYS or key.startswith(WHERE_PREFIXES)


def _values(keys: Iterable[str], overrides: Sequence[str], cfg: DictConfig) -> dict[str, str]:
    """key -> shown value: the trial's own override (`model=resnet18`), else the config's."""
    given = dict(filter(None, map(_split, overrides)))
    out: dict[str, str] = {}
    for key in keys:
        if key in given:
            out[key] = show(given[key])
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not isinstance(value, DictConfig | list):
            out[key] = show(value)
    return out


def sweep_name(kind: str, sweep_dir: Path) -> str:
    """`grid-211238` for Hydra's <date>/<HH-MM-SS> sweep folder, else `grid-<folder name>`."""
    name = sweep_dir.name
    stamp = name.replace("-", "") if _TIME_FOLDER.match(name) else name
    return f"{kind}-{stamp}"


def _name(head: str, varying: Mapping[str, str]) -> str:
    name = " ".join([head, *(f"{k}={v}" for k, v in varying.items())])
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def identify(
    cfg: DictConfig,
    *,
    multirun: bool = False,
    sweeper: str | None = None,
    sweep_dir: Path | None = None,
    job_num: int | None = None,
    task_overrides: Sequence[str] = (),
    argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    now: float | None = None,
    git_commit: str | None = None,
) -> Identity:
    """The identity of a run from what Hydra, the command line and the environment say."""
    env = os.environ if env is None else env
    job = env.get("TRAINING_JOB_NAME") or None
    where = job or "local"
    if multirun and sweep_dir is not None:
        optuna = sweeper == "optuna"
        keys = list(swept_keys(argv))
        if optuna and cfg.get("sweep") is not None:
            keys += [str(k) for k in (cfg.sweep.get("params") or {})]
        varying = _values(dict.fromkeys(keys), task_overrides, cfg)
        sweep = sweep_name("hpo" if optuna else "grid", sweep_dir)
        trial = int(job_num or 0)
        return Identity(
            name=_name(f"{sweep}/{trial}", varying),
            sweep=sweep,
            sweep_key=str(Path(sweep_dir).resolve()),
            trial=trial,
            varying=varying,
            where=where,
            git_commit=git_commit,
        )
    if job:
        tuning = TUNING_TRIAL.match(job)
        varying = _values(dict.fromkeys(tuned_keys(argv)), (), cfg)
        if tuning:
            sweep, trial = tuning["sweep"], int(tuning["trial"])
            return Identity(
                name=_name(f"{sweep}/{trial}", varying),
                sweep=sweep,
                sweep_key=sweep,
                trial=trial,
                varying=varying,
                where=where,
                git_commit=git_commit,
            )
        return Identity(_name(job, varying), None, None, None, varying, where, git_commit)
    own = [k for k, _ in filter(None, map(_split, task_overrides)) if not _is_where(k)]
    varying = _values(dict.fromkeys(own), task_overrides, cfg)
    stamp = time.strftime("%m%d-%H%M%S", time.localtime(now))
    return Identity(_name(f"run-{stamp}", varying), None, None, None, varying, where, git_commit)


def git_commit(root: Path) -> str | None:
    """The checkout's commit (`+dirty` with uncommitted changes to the code or configs), or the
    one a SageMaker source bundle recorded (bundle.json); None when neither is known."""
    bundle = Path(root) / "bundle.json"
    if bundle.is_file():
        try:
            return json.loads(bundle.read_text()).get("git_commit")
        except (OSError, ValueError):
            return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src", "conf", "train.py"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def data_fingerprint(rows: Iterable) -> str:
    """12 hex digits naming the data a run used: its manifest rows (id, count, split)."""
    h = hashlib.sha1()
    for r in sorted((str(r.id), int(r.count), str(r.split)) for r in rows):
        h.update(f"{r[0]},{r[1]},{r[2]};".encode())
    return h.hexdigest()[:12]


# The hyperparameters every tracker compares runs by (besides the swept ones): name -> config key.
MAIN = {
    "lr": "lr",
    "batch_size": "batch_size",
    "model": "model.net.backbone",
    "head": "model.net.head",
    "image_size": "data.image_size",
    "epochs": "trainer.max_epochs",
}


def data_label(source) -> str:
    """A short name for data.source: the folder's name (`abid`), `abid+abid-more` for a list."""
    many = isinstance(source, list | tuple) or OmegaConf.is_list(source)
    items = list(source) if many else [source]
    names = []
    for item in items:
        path = item.get("path") if isinstance(item, Mapping) or OmegaConf.is_dict(item) else item
        names.append(str(path).rstrip("/").rsplit("/", 1)[-1] or str(path))
    return "+".join(names)


def _typed(value):
    """A value TensorBoard's HParams and MLflow take: bool, int, float or str."""
    if isinstance(value, bool | int | float | str):
        return value
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value, resolve=True))
    return str(value)


def hparams(cfg: DictConfig, ident: Identity) -> dict:
    """The hyperparameters runs are compared by, in every tracker: the main ones (lr, batch
    size, model, head, image size, epochs, data) and the ones the sweep varies."""
    out = {}
    for name, key in MAIN.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            out[name] = _typed(value)
    source = OmegaConf.select(cfg, "data.source", default=None)
    if source is not None:
        out["data"] = data_label(source)
    for key, shown in ident.varying.items():
        if key in MAIN.values():  # already there, by its short name
            continue
        value = OmegaConf.select(cfg, key, default=None)
        scalar = value is not None and not OmegaConf.is_config(value)
        out[key] = _typed(value) if scalar else shown
    return out


def from_context(cfg: DictConfig) -> Identity:
    """The identity of the run now starting: Hydra's runtime config when `python train.py`
    (or `-m`) started it, the SageMaker job's name and hyperparameters in a training job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from bincount.config import project_root

    commit = git_commit(project_root())
    if not HydraConfig.initialized():
        return identify(cfg, argv=sys.argv[1:], git_commit=commit)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    num = hc.job.get("num") if multirun else None
    return identify(
        cfg,
        multirun=multirun,
        sweeper=hc.runtime.choices.get("hydra/sweeper"),
        sweep_dir=Path(hc.sweep.dir) if multirun else None,
        job_num=int(num) if num is not None else None,
        task_overrides=list(hc.overrides.task),
        argv=sys.argv[1:],
        git_commit=commit,
    )
