"""The search space of conf/sweep/hpo.yaml, checked, and in SageMaker's terms.

One definition by Hydra key (see the file for its format) serves the SageMaker tuner (here) and
the local sweeper. The tuned keys reach a trial as `--lr 0.0123 --batch_size 64` (a dotted key
as `--data__image_size 96`), which the container bridge turns into the overrides
`lr=0.0123 batch_size=64` (`data.image_size=96`).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from bincount import logged_metrics
from bincount.errors import BincountError
from bincount.sagemaker.launch.overrides import tuned_name

STRATEGIES = {"bayesian": "Bayesian", "random": "Random", "grid": "Grid"}
DIRECTIONS = {"maximize": "Maximize", "minimize": "Minimize"}


@dataclass(frozen=True)
class Param:
    key: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    metric: str
    direction: str
    strategy: str
    max_trials: int
    parallel_trials: int
    early_stopping: bool
    seed: int | None

    def parameter_ranges(self) -> dict[str, list[dict]]:
        """The ParameterRanges of a CreateHyperParameterTuningJob request."""
        ranges: dict[str, list[dict]] = {
            "IntegerParameterRanges": [],
            "ContinuousParameterRanges": [],
            "CategoricalParameterRanges": [],
        }
        for p in self.params:
            if p.type == "categorical":
                values = [_text(v) for v in p.choices]
                ranges["CategoricalParameterRanges"].append(
                    {"Name": tuned_name(p.key), "Values": values}
                )
                continue
            kind = "ContinuousParameterRanges" if p.type == "float" else "IntegerParameterRanges"
            ranges[kind].append(
                {
                    "Name": tuned_name(p.key),
                    "MinValue": _text(p.low),
                    "MaxValue": _text(p.high),
                    "ScalingType": "Logarithmic" if p.log else "Linear",
                }
            )
        return ranges

    def tuning_job_config(self) -> dict:
        config = {
            "Strategy": STRATEGIES[self.strategy],
            "HyperParameterTuningJobObjective": {
                "Type": DIRECTIONS[self.direction],
                "MetricName": self.metric,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": self.max_trials,
                "MaxParallelTrainingJobs": self.parallel_trials,
            },
            "ParameterRanges": self.parameter_ranges(),
            "TrainingJobEarlyStoppingType": "Auto" if self.early_stopping else "Off",
        }
        if self.seed is not None:
            config["RandomSeed"] = self.seed
        return config


def metric_definitions(names=logged_metrics.LOGGED) -> list[dict[str, str]]:
    """How SageMaker reads the job's figures from its log lines (`val/acc=0.8125`): one
    definition for each figure the trainer prints (bincount.logged_metrics)."""
    return [{"Name": n, "Regex": logged_metrics.regex(n)} for n in names]


def check_objective(metric: str) -> str:
    """A tuning objective must be one of the job's metric definitions (SageMaker scores a trial
    by the last value its definition reads): one line otherwise."""
    if metric not in logged_metrics.OBJECTIVES:
        raise BincountError(
            f"the tuning objective {metric} is not a figure the trainer prints each epoch, so no "
            f"metric definition reads it: use optimized_metric= one of "
            f"{', '.join(logged_metrics.OBJECTIVES)}"
        )
    return metric


def _text(v) -> str:
    """A value as SageMaker sends it (strings), and as a Hydra override reads it back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return "null" if v is None else str(v)


def _param(key: str, node, train_cfg: DictConfig) -> Param:
    where = f"sweep.params.{key}"
    if OmegaConf.select(train_cfg, key, default="__missing__") == "__missing__":
        raise BincountError(
            f"{where}: `{key}` is not a key of the training config; use a Hydra key such as "
            "lr, batch_size or data.image_size"
        )
    if not isinstance(node, DictConfig) or "type" not in node:
        raise BincountError(f"{where} needs a type: float, int or categorical")
    kind = node.type
    if kind == "categorical":
        choices = tuple(OmegaConf.to_container(node.get("choices") or []))
        if not choices:
            raise BincountError(f"{where}.choices is empty: list the values to try")
        return Param(key, kind, choices=choices)
    if kind not in ("float", "int"):
        raise BincountError(f"{where}.type={kind}: use float, int or categorical")
    try:
        low, high = float(node.low), float(node.high)
    except (TypeError, ValueError, AttributeError):
        raise BincountError(f"{where} needs numeric low and high") from None
    if not low < high:
        raise BincountError(f"{where}: low={low} must be below high={high}")
    log = bool(node.get("log", False))
    if log and low <= 0:
        raise BincountError(f"{where}: a log scale needs low > 0 (got {low})")
    if kind == "int":
        low, high = int(low), int(high)
    return Param(key, kind, low, high, log)


def space(cfg: DictConfig) -> Space:
    """The search space of `cfg.sweep` (composed with +sweep=hpo), checked against `cfg`."""
    sweep = cfg.get("sweep")
    if not sweep or not sweep.get("params"):
        raise BincountError("no search space: add +sweep=hpo (conf/sweep/hpo.yaml)")
    params = tuple(_param(str(k), v, cfg) for k, v in sweep.params.items())
    strategy = str(sweep.get("strategy", "bayesian")).lower()
    if strategy not in STRATEGIES:
        raise BincountError(f"sweep.strategy={strategy}: use one of {', '.join(STRATEGIES)}")
    if strategy == "grid" and any(p.type != "categorical" for p in params):
        raise BincountError("sweep.strategy=grid takes categorical params only: list choices")
    direction = str(sweep.objective.get("direction", "maximize")).lower()
    if direction not in DIRECTIONS:
        raise BincountError(f"sweep.objective.direction={direction}: use maximize or minimize")
    max_trials, parallel = int(sweep.max_trials), int(sweep.parallel_trials)
    if max_trials < 1 or not 1 <= parallel <= max_trials:
        raise BincountError(
            f"sweep.max_trials={max_trials}, sweep.parallel_trials={parallel}: need "
            "1 <= parallel_trials <= max_trials"
        )
    return Space(
        params=params,
        metric=str(sweep.objective.metric),
        direction=direction,
        strategy=strategy,
        max_trials=max_trials,
        parallel_trials=parallel,
        early_stopping=bool(sweep.get("early_stopping", False)),
        seed=sweep.get("seed"),
    )
