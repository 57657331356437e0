"""A Hydra sweeper on a current Optuna that reads the project's one search space.

    python train.py -m +sweep=hpo hydra/sweeper=optuna [sweep.max_trials=8] [OVERRIDES]

The space, objective direction, trial count, strategy and seed come from the `sweep` node
(conf/sweep/hpo.yaml, checked by `bincount.sagemaker.hpo.space`, which the SageMaker tuner
reads too). Each trial is one `train()` (Hydra job, numbered subfolder of the sweep folder)
whose return value is the objective. Plain overrides on the command line apply to every trial.
Trials run one after another on Hydra's launcher; a failed trial is recorded as failed and the
sweep carries on. Early stopping of trials (`sweep.early_stopping`) is a SageMaker feature:
locally every trial runs to its end. The study is written to `optuna.yaml` and `trials.csv`
in the sweep folder.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

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
        from bincount.errors import BincountError

        try:
            return self._sweep(arguments)
        except BincountError as e:  # said like train.py says it: no traceback
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def _sweep(self, arguments: list[str]) -> Any:
        import optuna

        from bincount.errors import BincountError
        from bincount.sagemaker.hpo import space as read_space

        assert self.config is not None and self.launcher is not None
        parsed = OverridesParser.create().parse_overrides(arguments)
        swept = [o.input_line for o in parsed if o.is_sweep_override()]
        if swept:
            raise BincountError(
                f"{', '.join(swept)}: hydra/sweeper=optuna takes its ranges from sweep.params "
                "(e.g. sweep.params.lr.high=0.05); for a grid, drop hydra/sweeper=optuna"
            )
        space = read_space(self.config)
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

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler(space, seed, self.n_startup_trials),
            direction=space.direction,
            load_if_exists=bool(self.storage),
        )
        log.info(
            "Optuna %s sweep of %s: %d trials, %s %s, seed %s, in %s",
            space.strategy,
            ", ".join(dists),
            n_trials,
            space.direction,
            space.metric,
            seed,
            sweep_dir,
        )
        returns = []
        for i in range(n_trials):
            trial = study.ask(dists)
            overrides = fixed + [f"{keys[k]}={_value(v)}" for k, v in trial.params.items()]
            self.validate_batch_is_legal([overrides])
            (ret,) = self.launcher.launch([overrides], initial_job_idx=i)
            returns.append(ret)
            if ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, int | float):
                study.tell(trial, float(ret.return_value))
                log.info("trial %d: %s -> %s=%.4f", i, trial.params, space.metric, ret.return_value)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s (%s)", i, trial.params, ret._return_value)
        self._write(study, space, sweep_dir)
        return returns

    @staticmethod
    def _write(study, space, sweep_dir: Path) -> None:
        from bincount.fileio import atomic_write_text

        rows = [
            {"trial": t.number, "state": t.state.name, space.metric: t.value, **t.params}
            for t in study.trials
        ]
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(sweep_dir / "trials.csv", buf.getvalue())
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        summary: dict[str, Any] = {
            "name": "optuna",
            "strategy": space.strategy,
            "direction": space.direction,
            "metric": space.metric,
            "trials": len(study.trials),
            "completed": len(done),
        }
        if done:
            summary["best_trial"] = study.best_trial.number
            summary["best_value"] = float(study.best_value)
            summary["best_params"] = dict(study.best_params)
            log.info(
                "best: trial %d %s=%.4f %s",
                study.best_trial.number,
                space.metric,
                study.best_value,
                study.best_params,
            )
        else:
            log.warning("no trial completed: see the trials' train.log in %s", sweep_dir)
        atomic_write_text(sweep_dir / "optuna.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
