"""A Hydra sweeper on a current Optuna that reads the project's one search space.

    python train.py -m +sweep=hpo hydra/sweeper=optuna [sweep.max_trials=8] [OVERRIDES]

The space, objective direction, trial count, strategy and seed come from the `sweep` node
(conf/sweep/hpo.yaml, checked by `bincount.sagemaker.launch.hpo.space`, which the SageMaker tuner
reads too). Each trial is one `train()` (Hydra job, numbered subfolder of the sweep folder)
whose return value is the objective. Plain overrides on the command line apply to every trial.
Trials run one after another on Hydra's launcher; a failed trial is recorded as failed and the
sweep carries on. Early stopping of trials (`sweep.early_stopping`) is a SageMaker feature:
locally every trial runs to its end. The study is written to `optuna.yaml` and `trials.csv`
in the sweep folder.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.bincount_optuna import records

log = logging.getLogger(__name__)


def distributions(space) -> dict[str, Any]:
    """Optuna distributions of a checked `Space`, by Hydra key."""
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for p in space.params:
        if p.type == "categorical":
            out[p.key] = d.CategoricalDistribution(list(p.choices))
        elif p.type == "int":
            out[p.key] = d.IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            out[p.key] = d.FloatDistribution(float(p.low), float(p.high), log=p.log)
    return out


def sampler(space, seed: int | None, n_startup_trials: int | None = None):
    """TPE for `bayesian` (random for its first `n_startup_trials`, Optuna's 10 by default)."""
    import optuna

    if space.strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if space.strategy == "grid":
        grid = {p.key: list(p.choices) for p in space.params}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if n_startup_trials is not None:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(n_startup_trials))
    return optuna.samplers.TPESampler(seed=seed)


def local(config: DictConfig) -> DictConfig:
    """The config as a local sweep reads it: `sweep.parallel_trials` is SageMaker's (how many
    training jobs at once) and never blocks a local sweep (`sweep.max_trials=1` works)."""
    sweep = config.get("sweep")
    if not sweep:
        return config
    try:
        parallel, most = int(sweep.get("parallel_trials", 1)), int(sweep.get("max_trials", 1))
    except (TypeError, ValueError):
        return config  # the space's own check says what is wrong
    if 1 <= most < parallel:
        config = copy.deepcopy(config)
        with open_dict(config), read_write(config):
            config.sweep.parallel_trials = most
    return config


def edges(space) -> list[dict[str, Any]]:
    """Points that reach every end of the space: each parameter's low and high (or each of its
    choices), the others at their first. Checked before the first trial."""

    def ends(p) -> list:
        return list(p.choices) if p.type == "categorical" else [p.low, p.high]

    first = {p.key: ends(p)[0] for p in space.params}
    out = [first]
    for p in space.params:
        out += [{**first, p.key: v} for v in ends(p)[1:]]
    return out


def study_name(space, fixed: list[str]) -> str:
    """A kept study's name when none is given: the same search (space, objective, fixed
    overrides; not the trial count) resumes the same study."""
    text = json.dumps(
        [
            space.metric,
            space.direction,
            space.strategy,
            [dataclasses.asdict(p) for p in space.params],
            sorted(a for a in fixed if not a.startswith("sweep.max_trials=")),
        ],
        default=str,
    )
    return "bincount-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "null" if v is None else str(v)


class BincountOptunaSweeper(Sweeper):
    def __init__(
        self,
        n_trials: int | None = None,
        seed: int | None = None,
        storage: str | None = None,
        study_name: str | None = None,
        n_startup_trials: int | None = None,
    ) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_trials = n_trials
        self.seed = seed
        self.storage = storage
        self.study_name = study_name
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        return records.sweep_said(self._sweep, arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        import optuna

        from bincount.errors import BincountError
        from bincount.sagemaker.launch.hpo import space as read_space

        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        parsed = OverridesParser.create().parse_overrides(arguments)
        swept = [o.input_line for o in parsed if o.is_sweep_override()]
        if swept:
            raise BincountError(
                f"{', '.join(swept)}: hydra/sweeper=optuna takes its ranges from sweep.params "
                "(e.g. sweep.params.lr.high=0.05); for a grid, drop hydra/sweeper=optuna"
            )
        space = read_space(local(self.config))
        n_trials = int(self.n_trials or space.max_trials)
        seed = self.seed if self.seed is not None else space.seed
        dists = distributions(space)
        fixed = list(arguments)
        # The checkpoint keeps the best epoch by the same direction as the study (as a SageMaker
        # tuning job's trials get it), unless the command line says otherwise.
        mode = "min" if space.direction == "minimize" else "max"
        if not any(a.lstrip("+~").startswith("optimized_mode=") for a in arguments):
            fixed.append(f"optimized_mode={mode}")
        keys = {k: (k if OmegaConf.select(self.config, k) is not None else f"++{k}") for k in dists}
        corners = edges(space)
        records.check_trials(
            self.hydra_context.config_loader,
            self.config,
            [fixed + [f"{keys[k]}={_value(v)}" for k, v in c.items()] for c in corners],
            [" ".join(f"{k}={_value(v)}" for k, v in c.items()) for c in corners],
        )

        sweep_dir = Path(self.config.hydra.sweep.dir)
        name = self.study_name or (study_name(space, fixed) if self.storage else None)
        before = finished = 0
        if self.storage and name:
            try:
                before = len(optuna.load_study(study_name=name, storage=self.storage).trials)
            except KeyError:
                before = 0
        # A resumed study's sampler gets a seed of its own: the same seed would propose the first
        # session's parameters again.
        if seed is not None and before:
            seed = int(seed) + before
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            sampler=sampler(space, seed, self.n_startup_trials),
            direction=space.direction,
            load_if_exists=bool(self.storage),
        )
        sweep_dir = self._folder(study, sweep_dir)
        in_folder = [f"hydra.sweep.dir={sweep_dir}"] if sweep_dir != self._own_dir() else []
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        finished = sum(t.state.is_finished() for t in study.trials)
        log.info(
            "Optuna %s sweep of %s: %d trials, %s %s, seed %s, in %s%s",
            space.strategy,
            ", ".join(dists),
            n_trials,
            space.direction,
            space.metric,
            seed,
            sweep_dir,
            f" (study {name} resumed: {finished} trials done, trial {len(study.trials)} next)"
            if before
            else "",
        )
        if finished >= n_trials:
            log.info(
                "study %s has %d finished trials (sweep.max_trials=%d): raise sweep.max_trials "
                "to run more",
                name,
                finished,
                n_trials,
            )
        returns = []
        for _ in range(n_trials - finished):
            trial = study.ask(dists)
            params = [f"{keys[k]}={_value(v)}" for k, v in trial.params.items()]
            overrides = fixed + params
            trial.set_user_attr("overrides", overrides)
            self.validate_batch_is_legal([overrides + in_folder])
            (ret,) = self.launcher.launch([overrides + in_folder], initial_job_idx=trial.number)
            returns.append(ret)
            if records.completed(ret):
                study.tell(trial, float(ret.return_value))
                log.info(
                    "trial %d: %s -> %s=%.4f",
                    trial.number,
                    trial.params,
                    space.metric,
                    ret.return_value,
                )
            else:
                error = records.failure(ret)
                trial.set_user_attr("error", error)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s (%s)", trial.number, trial.params, error)
        self._write(study, space, sweep_dir, name)
        if not any(t.state.name == "COMPLETE" for t in study.trials):
            records.no_trial_completed(sweep_dir)
        return returns

    def _own_dir(self) -> Path:
        assert self.config is not None
        return Path(self.config.hydra.sweep.dir).absolute()

    def _folder(self, study, sweep_dir: Path) -> Path:
        """The study's one sweep folder: this one, or for a resumed study the first session's
        (this session's folder then links to it)."""
        here = sweep_dir.absolute()
        first = study.user_attrs.get("sweep_dir")
        if not first or not Path(first).is_dir():
            study.set_user_attr("sweep_dir", str(here))
            return here
        first = Path(first)
        if first.resolve() == here.resolve():
            return here
        if here.is_dir() and not here.is_symlink() and not any(here.iterdir()):
            here.rmdir()
        if not here.exists() and not here.is_symlink():
            here.parent.mkdir(parents=True, exist_ok=True)
            here.symlink_to(first, target_is_directory=True)
            log.info("%s links to the study's sweep folder %s", here, first)
        return first

    @staticmethod
    def _write(study, space, sweep_dir: Path, name: str | None = None) -> None:
        from bincount.reports.trials import reproduce

        rows = [
            {
                "trial": t.number,
                "state": t.state.name,
                space.metric: t.value,
                **t.params,
                "error": t.user_attrs.get("error", ""),
            }
            for t in study.trials
        ]
        records.write_trials(sweep_dir, rows)
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        summary: dict[str, Any] = {
            "name": "optuna",
            "strategy": space.strategy,
            "direction": space.direction,
            "metric": space.metric,
            "trials": len(study.trials),
            "completed": len(done),
            "failed": sum(t.state.name == "FAIL" for t in study.trials),
        }
        if name:
            summary["study"] = name
        if done:
            best = study.best_trial
            summary["best_trial"] = best.number
            summary["best_value"] = float(study.best_value)
            summary["best_params"] = dict(best.params)
            if best.user_attrs.get("overrides"):
                summary["reproduce"] = reproduce(list(best.user_attrs["overrides"]))
        else:
            log.warning("no trial completed: see error.txt in the trial folders of %s", sweep_dir)
        records.write_summary(sweep_dir, "optuna.yaml", summary)
