"""Sweeps, real tiny trainings: grids (`-m a=1,2`: every combination checked before the first
trial, a failed trial recorded, trials.csv and grid.yaml) compared by `bincount compare`, and
`hydra/sweeper=optuna` over the shared search space (conf/sweep/hpo.yaml), resumed from its
storage; the sweepers' errors and their reading of the space (fast)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from runner import run_train

from bincount.cli import main
from bincount.reports.compare import collect


def read_trials(sweep) -> list[dict]:
    with (sweep / "trials.csv").open() as f:
        return list(csv.DictReader(f))


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
    assert len(runs.done) == 4 and not runs.failed
    grid = {(r.config["lr"], r.config["batch_size"]) for r in runs.done}
    assert grid == {(0.001, 4), (0.001, 8), (0.03, 4), (0.03, 8)}
    values = [r.metrics["objective"]["value"] for r in runs.done]
    assert values == sorted(values, reverse=True)
    trials = read_trials(sweep)
    assert [(t["lr"], t["batch_size"]) for t in trials] == [
        ("0.001", "4"),
        ("0.001", "8"),
        ("0.03", "4"),
        ("0.03", "8"),
    ]
    summary = yaml.safe_load((sweep / "grid.yaml").read_text())
    assert summary["completed"] == 4 and summary["best_value"] == pytest.approx(values[0])

    assert main(["compare", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 runs, by val/acc (maximize)")
    assert lines[1].split()[:4] == ["run", "lr", "batch_size", "objective"]
    rows = [line[1:].split() for line in lines[3:7]]
    assert [r[0] for r in rows] == [r.path.name for r in runs.done]
    assert [float(r[3]) for r in rows] == pytest.approx(values, abs=1e-4)
    assert (sweep / "compare" / "progress.png").is_file()


def test_grid_checks_every_combination_before_the_first_trial(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", "lr=0.001,-1", "batch_size=4", "experiment=smoke", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: trial 1 of 2 (lr=-1): lr=-1 must be above 0: set a learning rate above 0, "
        "e.g. lr=0.001 (nothing was trained)"
    )
    assert not (sweep / "0").exists()  # trial 0 never started


@pytest.mark.long
def test_grid_records_a_failed_trial_and_writes_trials_and_summary(tiny_source, tmp_path, capsys):
    # Lightning refuses `bogus` when it builds the trainer: a failure no check foresees
    proc = run_train(
        "-m",
        "+trainer.gradient_clip_algorithm=norm,bogus",
        "test=false",
        *sweep_args(tiny_source, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    said = "MisconfigurationException: `gradient_clip_algorithm` bogus is invalid."
    trials = read_trials(sweep)
    assert [(t["trial"], t["state"]) for t in trials] == [("0", "COMPLETE"), ("1", "FAIL")]
    assert (
        trials[1]["error"].startswith(said)
        and trials[1]["trainer.gradient_clip_algorithm"] == "bogus"
    )
    assert (sweep / "1" / "error.txt").read_text().startswith(said)
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert float(trials[0]["val/acc"]) == pytest.approx(metrics["objective"]["value"])
    summary = yaml.safe_load((sweep / "grid.yaml").read_text())
    assert summary["trials"] == 2 and summary["completed"] == 1 and summary["failed"] == 1
    assert summary["best_trial"] == 0
    assert summary["best_params"] == {"trainer.gradient_clip_algorithm": "norm"}
    assert summary["reproduce"].startswith("python train.py +trainer.gradient_clip_algorithm=norm")

    assert main(["compare", str(sweep)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["run", "trainer.gradient_clip_algorithm"]
    assert lines[3].startswith("*") and lines[3][1:].split()[:2] == ["0", "norm"]
    assert f"reproduce: {summary['reproduce']}" in lines
    failed = f"  1 (trainer.gradient_clip_algorithm=bogus): {said}"
    assert any(line.startswith(failed) for line in lines)


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
    trials = read_trials(sweep)
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


@pytest.mark.long
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


@pytest.mark.long
def test_a_resumed_optuna_study_continues(tiny_source, tmp_path):
    """sweep.max_trials=1 runs locally (parallel_trials=2 is SageMaker's); the same command with
    the study kept and more trials continues it: trial numbers go on, no parameters repeat, one
    sweep folder (the second session's links to it), one trials.csv."""
    db = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}"
    args = [
        "-m",
        "+sweep=hpo",
        "hydra/sweeper=optuna",
        "sweep.seed=7",
        "trainer.max_epochs=1",
        "sweep.params.batch_size.choices=[4,8]",
        "test=false",
        db,
        *sweep_args(tiny_source, tmp_path)[:-1],
    ]
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_train(*args, "sweep.max_trials=1", f"hydra.sweep.dir={first}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [t["trial"] for t in read_trials(first)] == ["0"]
    proc = run_train(*args, "sweep.max_trials=2", f"hydra.sweep.dir={second}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "resumed: 1 trials done, trial 1 next" in log
    assert "trial 1: {" in log and "trial 0: {" not in log
    assert second.is_symlink() and second.resolve() == first.resolve()
    assert sorted(p.name for p in first.iterdir() if p.name.isdigit()) == ["0", "1"]
    trials = read_trials(first)
    assert [(t["trial"], t["state"]) for t in trials] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    assert trials[0]["lr"] != trials[1]["lr"]  # the same seed again would propose trial 0's
    for t in trials:
        cfg = yaml.safe_load((first / t["trial"] / "config.yaml").read_text())
        assert float(t["lr"]) == pytest.approx(cfg["lr"])
    summary = yaml.safe_load((first / "optuna.yaml").read_text())
    assert summary["trials"] == 2 and summary["study"].startswith("bincount-")
    best = trials[summary["best_trial"]]
    assert summary["reproduce"].startswith("python train.py trainer.max_epochs=1 test=false")
    assert summary["reproduce"].endswith(f"lr={best['lr']} batch_size={best['batch_size']}")
    assert "+sweep=hpo" not in summary["reproduce"]


def test_optuna_sweeper_checks_the_space_ends_before_the_first_trial(tmp_path):
    proc = run_train(
        "-m",
        "+sweep=hpo",
        "hydra/sweeper=optuna",
        "sweep.params.lr.log=false",
        "sweep.params.lr.low=-1",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 2
    assert "error: trial 0 of 6 (lr=-1.0 batch_size=" in proc.stderr
    assert "): lr=-1.0 must be above 0" in proc.stderr
    assert "(nothing was trained)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "0").exists()


def test_sagemaker_only_settings_do_not_block_a_local_sweep(make_cfg):
    from bincount.sagemaker.launch.hpo import space
    from hydra_plugins.bincount_optuna.optuna_sweeper import local, study_name

    cfg = make_cfg("+sweep=hpo", "sweep.max_trials=1")  # parallel_trials stays 2
    with pytest.raises(Exception, match="parallel_trials <= max_trials"):
        space(cfg)  # still refused for a SageMaker tuning job
    assert space(local(cfg)).max_trials == 1 and cfg.sweep.parallel_trials == 2
    s = space(local(cfg))
    same = study_name(s, ["a=1", "sweep.max_trials=1"])
    assert same == study_name(s, ["a=1", "sweep.max_trials=9"]) != study_name(s, ["a=2"])


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

    from bincount.sagemaker.launch.hpo import space
    from hydra_plugins.bincount_optuna.optuna_sweeper import distributions, sampler

    cfg = make_cfg("+sweep=hpo", "sweep.seed=3")
    dists = distributions(space(cfg))
    assert dists["lr"] == optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
    assert dists["batch_size"].choices == (16, 32, 64, 128, 256)
    assert isinstance(sampler(space(cfg), 3), optuna.samplers.TPESampler)
    assert sampler(space(cfg), 3, n_startup_trials=2)._n_startup_trials == 2
    grid = make_cfg("+sweep=hpo", "sweep.strategy=grid", "~sweep.params.lr")
    assert isinstance(sampler(space(grid), 3), optuna.samplers.GridSampler)
