"""Sweeps: a 2x2 grid multirun compared by `bincount compare`, and `hydra/sweeper=optuna` over
the shared search space (conf/sweep/hpo.yaml), both real tiny trainings (slow); the sweeper's
errors and its reading of the space (fast)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from runner import run_train

from bincount.cli import main
from bincount.reports.compare import collect

TINY = ("experiment=smoke", "debug=limit", "data.image_size=64", "data.num_workers=0")


def sweep_args(tiny_source, tmp_path) -> list[str]:
    return [
        *TINY,
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]


@pytest.mark.slow
def test_grid_multirun_then_compare(tiny_source, tmp_path, capsys):
    proc = run_train("-m", "lr=0.001,0.03", "batch_size=4,8", *sweep_args(tiny_source, tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    runs = collect([sweep])
    assert len(runs.done) == 4 and not runs.crashed
    grid = {(r.config["lr"], r.config["batch_size"]) for r in runs.done}
    assert grid == {(0.001, 4), (0.001, 8), (0.03, 4), (0.03, 8)}
    values = [r.metrics["objective"]["value"] for r in runs.done]
    assert values == sorted(values, reverse=True)

    assert main(["compare", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 runs, by val/acc (maximize)")
    assert [line.split()[0] for line in lines[3:7]] == [r.path.name for r in runs.done]
    assert [float(line.split()[5]) for line in lines[3:7]] == pytest.approx(values, abs=1e-4)
    assert (sweep / "compare" / "progress.png").is_file()


@pytest.mark.slow
def test_optuna_sweep_of_the_shared_space(tiny_source, tmp_path):
    proc = run_train(
        "-m",
        "+sweep=hpo",
        "hydra/sweeper=optuna",
        "sweep.max_trials=3",
        "sweep.seed=7",
        "sweep.params.batch_size.choices=[4,8]",
        *sweep_args(tiny_source, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    with (sweep / "trials.csv").open() as f:
        trials = list(csv.DictReader(f))
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    for i, t in enumerate(trials):
        cfg = yaml.safe_load((sweep / str(i) / "config.yaml").read_text())
        assert 0.001 <= cfg["lr"] <= 0.1 and cfg["batch_size"] in (4, 8)
        assert (
            float(t["lr"]) == pytest.approx(cfg["lr"]) and int(t["batch_size"]) == cfg["batch_size"]
        )
        metrics = json.loads((sweep / str(i) / "metrics.json").read_text())
        assert metrics["objective"]["value"] == pytest.approx(float(t["val/acc"]))
    summary = yaml.safe_load((sweep / "optuna.yaml").read_text())
    assert summary["completed"] == 3 and summary["direction"] == "maximize"
    assert summary["best_value"] == max(float(t["val/acc"]) for t in trials)


def test_a_minimizing_optuna_sweep_keeps_each_trials_lowest_epoch(tiny_source, tmp_path):
    proc = run_train(
        "-m",
        "+sweep=hpo",
        "hydra/sweeper=optuna",
        "sweep.max_trials=2",
        "sweep.objective.direction=minimize",
        "optimized_metric=val/loss",
        "sweep.params.batch_size.choices=[8]",
        "trainer.max_epochs=2",
        *sweep_args(tiny_source, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    for i in (0, 1):
        cfg = yaml.safe_load((sweep / str(i) / "config.yaml").read_text())
        assert cfg["optimized_mode"] == "min"  # the best checkpoint is the lowest val/loss
    summary = yaml.safe_load((sweep / "optuna.yaml").read_text())
    assert summary["direction"] == "minimize" and summary["completed"] == 2


def test_optuna_sweeper_refuses_a_grid_override(tmp_path):
    proc = run_train(
        "-m", "+sweep=hpo", "hydra/sweeper=optuna", "lr=0.01,0.1", f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode == 2
    assert "lr=0.01,0.1: hydra/sweeper=optuna takes its ranges from sweep.params" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_optuna_sweeper_needs_the_search_space(tmp_path):
    proc = run_train("-m", "hydra/sweeper=optuna", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 2
    assert "no search space: add +sweep=hpo" in proc.stderr


def test_space_becomes_optuna_distributions(make_cfg):
    import optuna

    from bincount.sagemaker.hpo import space
    from hydra_plugins.bincount_optuna.optuna_sweeper import distributions, sampler

    cfg = make_cfg("+sweep=hpo", "sweep.seed=3")
    dists = distributions(space(cfg))
    assert dists["lr"] == optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
    assert dists["batch_size"].choices == (16, 32, 64, 128, 256)
    assert isinstance(sampler(space(cfg), 3), optuna.samplers.TPESampler)
    assert sampler(space(cfg), 3, n_startup_trials=2)._n_startup_trials == 2
    grid = make_cfg("+sweep=hpo", "sweep.strategy=grid", "~sweep.params.lr")
    assert isinstance(sampler(space(grid), 3), optuna.samplers.GridSampler)
