"""The grid sweeper of `python train.py -m lr=0.001,0.01 batch_size=32,64` (the default
`hydra/sweeper=grid`, conf/hydra/sweeper/grid.yaml): Hydra's basic sweeper, which

- composes and checks every combination (bincount.validate) before the first trial trains: a
  bad value such as `lr=0.001,-1` is refused in one line, nothing trained;
- records a failed trial (its error.txt) and carries on with the others, like the Optuna sweeper;
- writes `trials.csv` (trial, state, objective, the swept values, error) and `grid.yaml` (the best
  trial, its values and the command that reproduces it) in the sweep folder.

The objective is what each trial's train() returns (`optimized_metric`; best by
`optimized_mode`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.bincount_optuna import records

log = logging.getLogger(__name__)


def _typed(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class BincountGridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)

    def sweep(self, arguments: list[str]) -> Any:
        return records.sweep_said(self._sweep, arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        loader = self.hydra_context.config_loader
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(
            self._parse_config() + list(arguments)
        )
        swept = [o.get_key_element() for o in parsed if o.is_sweep_override()]
        self.overrides = self.split_arguments(parsed, self.max_batch_size)
        jobs = [job for batch in self.overrides for job in batch]

        def values(job: list[str]) -> dict[str, str]:
            """The swept keys' values of a job (`+key` named `key`)."""
            pairs = (o.split("=", 1) for o in job if "=" in o)
            return {k.lstrip("+~"): v for k, v in pairs if k in swept}

        labels = [" ".join(f"{k}={v}" for k, v in values(job).items()) for job in jobs]
        records.check_trials(loader, self.config, jobs, labels)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        metric = str(self.config.get("optimized_metric", "objective"))
        maximize = str(self.config.get("optimized_mode", "max")) != "min"
        log.info(
            "grid of %d trials%s, %s %s, in %s (checked before the first)",
            len(jobs),
            f" over {', '.join(swept)}" if swept else "",
            "maximize" if maximize else "minimize",
            metric,
            sweep_dir,
        )
        rows: list[dict[str, Any]] = []
        best: tuple[float, int, list[str]] | None = None
        returns = []
        number = 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self.launcher.launch(batch, initial_job_idx=number)
            for ret, job in zip(results, batch, strict=True):
                row: dict[str, Any] = {"trial": number, "state": "COMPLETE", metric: None}
                row.update(values(job))
                if records.completed(ret):
                    value = float(ret.return_value)
                    row[metric] = value
                    log.info("trial %d: %s -> %s=%.4f", number, labels[number], metric, value)
                    score = value if maximize else -value
                    if best is None or score > best[0]:
                        best = (score, number, list(ret.overrides or job))
                else:
                    row.update(state="FAIL", error=records.failure(ret))
                    said = f" ({labels[number]})" if labels[number] else ""
                    log.warning("trial %d failed%s: %s", number, said, row["error"])
                rows.append(row)
                number += 1
            returns.append(results)

        records.write_trials(sweep_dir, rows)
        summary: dict[str, Any] = {
            "name": "grid",
            "strategy": "grid",
            "direction": "maximize" if maximize else "minimize",
            "metric": metric,
            "trials": len(rows),
            "completed": sum(r["state"] == "COMPLETE" for r in rows),
            "failed": sum(r["state"] == "FAIL" for r in rows),
        }
        if best is not None:
            from bincount.reports.trials import reproduce

            score, number, overrides = best
            summary["best_trial"] = number
            summary["best_value"] = score if maximize else -score
            summary["best_params"] = {k: _typed(v) for k, v in values(jobs[number]).items()}
            summary["reproduce"] = reproduce(overrides)
        records.write_summary(sweep_dir, "grid.yaml", summary)
        if best is None:
            records.no_trial_completed(sweep_dir)
        return returns
