"""`runner=ensemble` (`runner.members` in the config, e.g. `experiment=ensemble`).

Each member is a run of train.py's app (`python -m bincount.training.app`, a process of its
own: its own Hydra run, log and seeds) with its own overrides (plus the command line's, so
`data.source=...` or `trainer.max_epochs=...` reach every member), trained one after another
into `<run>/members/<name>/`. A member whose run already finished (metrics.json and its best
checkpoint present) is reused, so an interrupted ensemble resumes where it stopped. The
ensemble's answer is the mean of the members' probabilities (`bincount evaluate A B C`), scored
on the validation split and, once, on the test split; metrics.json has the same keys as a
single run's (`val/acc`, `test/rmse`, ...) plus each member's own figures.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from bincount import rundir
from bincount.config import project_root
from bincount.errors import BincountError

log = logging.getLogger("bincount")


def _members(spec) -> dict[str, list[str]]:
    """{name: overrides} of `runner.members`, checked."""
    if not isinstance(spec, DictConfig) or len(spec) < 2:
        raise BincountError(
            "runner.members must name at least two members, each a list of overrides, e.g. "
            "{small: [model.net.head=ordinal], large: [model=efficientnet_lite1, "
            "data.image_size=240]}"
        )
    out = {}
    for name, overrides in spec.items():
        if not str(name).replace("_", "").replace("-", "").isalnum():
            raise BincountError(f"ensemble member {name!r}: use letters, digits, - and _")
        items = OmegaConf.to_container(overrides) if isinstance(overrides, ListConfig) else None
        if not isinstance(items, list) or not all(isinstance(o, str) for o in items):
            raise BincountError(
                f"runner.members.{name} must be a list of overrides like model.net.head=ordinal"
            )
        out[str(name)] = items
    return out


def command_line_overrides() -> list[str]:
    """The overrides this run was started with (minus the experiment or runner that chose the
    ensemble)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task)
    except ValueError:  # train(cfg) called outside a Hydra app
        return []
    return [o for o in task if not o.lstrip("+~").startswith(("experiment=", "runner"))]


def _finished(run: Path) -> dict | None:
    """The metrics.json of a finished member run (its best checkpoint present), else None."""
    metrics = rundir.read_metrics(run)
    if metrics is None:
        return None
    ckpt = metrics.get("best_checkpoint")
    return metrics if ckpt and Path(ckpt).is_file() else None


def train_member(name: str, overrides: list[str], run: Path) -> dict:
    """Train one member (or reuse its finished run); returns its metrics.json."""
    done = _finished(run)
    if done is not None:
        log.info("ensemble member %s: reusing %s", name, run)
        return done
    cmd = [
        sys.executable,
        "-m",
        "bincount.training.app",
        *overrides,
        "test=false",
        "runner=fit",
        f"hydra.run.dir={run}",
    ]
    log.info("ensemble member %s: %s", name, " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=project_root(), env=os.environ.copy())
    done = _finished(run)
    if proc.returncode != 0 or done is None:
        raise BincountError(
            f"ensemble member {name} failed (exit {proc.returncode}; its log: {run}/train.log). "
            "Fix it and run the same command again: finished members are reused"
        )
    return done


def run(cfg: DictConfig, members: DictConfig | None = None) -> float:
    """Train the ensemble's `members` ({name: [overrides]}, `runner.members`), score their
    averaged probabilities; returns `cfg.optimized_metric` on validation."""
    from bincount.reports import evaluate
    from bincount.training.fit import print_summary

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BincountError(
            "an ensemble trains its members one after another: start it with one process "
            "(python train.py ...), not under torchrun"
        )
    started = time.monotonic()
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out, cfg)
    spec = _members(members)
    extra = command_line_overrides()
    trained = {
        name: train_member(name, [*overrides, *extra], rundir.member_dir(out, name))
        for name, overrides in spec.items()
    }
    results: dict = {"members": {}}
    for name, m in trained.items():
        results["members"][name] = {
            "checkpoint": m["best_checkpoint"],
            "overrides": spec[name],
            "val": m.get("val", {}),
            "objective": m.get("objective"),
            "fit_seconds": m.get("fit_seconds"),
        }
    paths = [Path(m["best_checkpoint"]) for m in trained.values()]
    counts: list[int] = []
    splits = ["val", "test"] if cfg.get("test", True) else ["val"]
    for split in splits:
        ev = evaluate.evaluate(paths, split=split)
        evaluate.write(ev, rundir.eval_dir(out, f"ensemble-run-{split}"))
        counts = ev.counts
        results[split] = {f"{split}/{k}": float(v) for k, v in ev.figures.items()}
        if split == "test":
            results["test_confusion"] = ev.confusion
    name = cfg.optimized_metric
    if name not in results["val"]:
        raise BincountError(
            f"optimized_metric={name} is not an ensemble figure; "
            f"pick one of {sorted(results['val'])}"
        )
    objective = results["val"][name]
    fit = [m["fit_seconds"] or 0.0 for m in results["members"].values()]
    results.update(
        objective={"name": name, "value": objective},
        ensemble=[str(p) for p in paths],
        counts=counts,
        fit_seconds=round(sum(fit), 1),
        seconds=round(time.monotonic() - started, 1),
    )
    rundir.write_metrics(out, results)
    print_summary(results, out)
    return objective
