"""logger=tensorboard|wandb|mlflow|many: CSV always on; each tracker writes its files offline
(TensorBoard event files, W&B offline run folder, MLflow local store) with the run's identity
(name, sweep, trial, tags), the curated hyperparameters and the kept epoch's figures; and the
acceptance test of issue 22: a grid and an Optuna sweep, asked of the real servers."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict
from runner import ROOT
from tracker_servers import (
    hparams_sessions,
    mlflow_runs,
    mlflow_server,
    tensorboard,
    wandb_run,
    wandb_summary,
)

from bincount import rundir
from bincount.reports.compare import collect
from bincount.reports.compare import objective as compare_objective
from bincount.sagemaker.launch.spec import metric_definitions
from bincount.training import identity, trackers
from bincount.training.fit import end_tracker_runs


def sweep_identity(cfg, trial: int, sweep_dir: Path) -> identity.Identity:
    return identity.identify(
        cfg,
        multirun=True,
        sweeper="basic",
        sweep_dir=sweep_dir,
        job_num=trial,
        task_overrides=[f"lr={cfg.lr}", "batch_size=4"],
        argv=["-m", "lr=0.0123,0.1", "batch_size=4", "logger=many"],
        env={},
        git_commit="abc123",
    ).with_data("f1f2f3f4f5f6")


def log_a_run(cfg, ident: identity.Identity) -> list:
    """What train() does with its loggers: start them, log two epochs, finish with the kept
    epoch's figures (the first: val/acc 0.5, the last 0.25)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out, cfg)
    loggers = trackers.build(cfg.logger, ident)
    trackers.start(loggers, ident, cfg, out)
    for lg in loggers:
        lg.log_metrics({"val/acc": 0.5}, step=0)
        lg.log_metrics({"val/acc": 0.25}, step=1)
    results = {
        "objective": {"name": "val/acc", "value": 0.5},
        "val": {"val/acc": 0.5, "val/loss": 1.5},
        "best_epoch": 1,
    }
    trackers.finish(loggers, ident, results, step=2)
    for lg in loggers:
        lg.finalize("success")
    end_tracker_runs(loggers)
    return loggers


@pytest.mark.parametrize(
    ("choice", "kinds"),
    [
        ("csv", {"CSVLogger"}),
        ("tensorboard", {"CSVLogger", "TensorBoardLogger"}),
        ("wandb", {"CSVLogger", "WandbLogger"}),
        ("mlflow", {"CSVLogger", "MLFlowLogger"}),
        ("many", {"CSVLogger", "TensorBoardLogger", "WandbLogger", "MLFlowLogger"}),
    ],
)
def test_csv_is_always_on(make_cfg, choice, kinds):
    cfg = make_cfg(f"logger={choice}")
    assert {v["_target_"].rsplit(".", 1)[1] for v in cfg.logger.values()} == kinds


def test_every_tracker_writes_offline_with_the_runs_identity(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg("logger=many", "lr=0.0123")
    out = Path(cfg.paths.output_dir)
    ident = sweep_identity(cfg, 1, tmp_path / "multirun" / "2026-12-01" / "21-12-38")
    assert ident.name == "grid-211238/1 lr=0.0123"
    log_a_run(cfg, ident)

    assert "val/acc" in (out / "csv" / "metrics.csv").read_text()
    assert "lr: 0.0123" in (out / "csv" / "hparams.yaml").read_text()  # the full config
    tb = out / "tensorboard" / "grid-211238_1 lr=0.0123"  # the run's name as its folder
    assert list(tb.glob("events.out.tfevents.*"))
    assert yaml.safe_load((tb / "hparams.yaml").read_text()) == {
        "lr": 0.0123,
        "batch_size": 32,
        "model": "tf_efficientnet_lite0",
        "head": "classify",
        "image_size": 224,
        "epochs": 6,
        "data": "abid",
    }

    (wandb_dir,) = (out / "wandb").glob("offline-run-*")
    (wandb_file,) = wandb_dir.glob("run-*.wandb")  # what `wandb sync` uploads
    run = wandb_run(wandb_file)
    assert (run.display_name, run.run_group, run.job_type) == (ident.name, "grid-211238", "trial")
    assert {"sweep:grid-211238", "trial:1", "data:f1f2f3f4f5f6", "where:local"} <= set(run.tags)
    summary = wandb_summary(wandb_file)
    assert summary["objective"] == 0.5 and summary["best/val/acc"] == 0.5

    store = tmp_path / "outputs" / "mlflow.db"  # paths.log_dir/mlflow.db
    with sqlite3.connect(store) as db:
        names = dict(db.execute("select run_uuid, name from runs").fetchall())
        params = db.execute("select key, value from params").fetchall()
        tags = dict(db.execute("select key, value from tags where key != 'mlflow.source.name'"))
        best = db.execute("select value from metrics where key='best/val/acc'").fetchall()
    assert sorted(names.values()) == ["grid-211238", ident.name]  # a parent run, and the trial
    assert dict(params)["lr"] == "0.0123" and len(params) == 7  # the curated set, not 140
    assert (
        tags["mlflow.parentRunId"] in names and names[tags["mlflow.parentRunId"]] == "grid-211238"
    )
    assert best == [(0.5,)]


def test_trials_of_one_sweep_share_one_mlflow_parent(make_cfg, tmp_path, monkeypatch):
    """Hydra runs a multirun's trials in one process: each gets its own W&B run, one MLflow
    run nested under the sweep's parent, which keeps the best objective so far."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = tmp_path / "sweep"
    for trial, lr in ((0, "0.0123"), (1, "0.1")):
        cfg = make_cfg("logger=many", f"lr={lr}")
        with open_dict(cfg):
            cfg.paths.output_dir = str(sweep / str(trial))
        log_a_run(cfg, sweep_identity(cfg, trial, sweep))
    runs = [list((sweep / t / "wandb").glob("offline-run-*")) for t in ("0", "1")]
    assert [len(r) for r in runs] == [1, 1]
    assert runs[0][0].name.rsplit("-", 1)[1] != runs[1][0].name.rsplit("-", 1)[1]
    with sqlite3.connect(tmp_path / "outputs" / "mlflow.db") as db:
        names = sorted(r[0] for r in db.execute("select name from runs"))
        parents = db.execute("select value from tags where key='mlflow.parentRunId'").fetchall()
    assert names == ["grid-sweep", "grid-sweep/0 lr=0.0123", "grid-sweep/1 lr=0.1"]
    assert len(set(parents)) == 1 and len(parents) == 2


def test_names_say_sweep_trial_and_what_varies(make_cfg, tmp_path):
    cfg = make_cfg("lr=0.012345", "batch_size=16", "+sweep=hpo")
    grid = identity.identify(
        cfg,
        multirun=True,
        sweeper="basic",
        sweep_dir=tmp_path / "2026-12-01" / "21-26-05",
        job_num=3,
        task_overrides=["lr=0.012345", "batch_size=16", "model=resnet18", "paths.log_dir=x"],
        argv=["-m", "lr=0.001,0.012345", "batch_size=16,32", "paths.log_dir=x"],
        env={},
    )
    assert grid.name == "grid-212605/3 lr=0.01235 batch_size=16"
    assert (grid.sweep, grid.trial, grid.where, grid.job_type) == (
        "grid-212605",
        3,
        "local",
        "trial",
    )
    assert grid.folder == "grid-212605_3 lr=0.01235 batch_size=16"

    optuna = identity.identify(
        cfg,
        multirun=True,
        sweeper="optuna",
        sweep_dir=tmp_path / "hpo",
        job_num=0,
        task_overrides=["optimized_mode=max", "lr=0.0123456789", "batch_size=16"],
        argv=["-m", "+sweep=hpo", "hydra/sweeper=optuna"],
        env={},
    )
    assert optuna.name == "hpo-hpo/0 lr=0.01235 batch_size=16"  # sweep.params' keys

    single = identity.identify(
        cfg,
        task_overrides=["model=resnet18", "logger=many", "data.source=/y", "lr=0.012345"],
        env={},
        now=0,
    )
    assert re.fullmatch(r"run-\d{4}-\d{6} model=resnet18 lr=0.01235", single.name)
    assert single.sweep is None and single.job_type == "train"

    tuned = identity.identify(
        cfg,
        argv=["--bincount_overrides", "[]", "--lr", "0.012345", "--sagemaker_program", "x"],
        env={"TRAINING_JOB_NAME": "bincount-hpo-261201-2123-007-1a2b3c4d"},
    )
    assert tuned.name == "bincount-hpo-261201-2123/7 lr=0.01235"
    assert tuned.where == "bincount-hpo-261201-2123-007-1a2b3c4d" and tuned.trial == 7
    job = identity.identify(cfg, argv=[], env={"TRAINING_JOB_NAME": "bincount-261201-2123"})
    assert (job.name, job.sweep, job.where) == ("bincount-261201-2123", None, job.name)


def test_hyperparameters_are_the_main_and_the_swept_ones(make_cfg, tmp_path):
    cfg = make_cfg("model.net.drop_rate=0.3", "data.image_size=96")
    ident = identity.identify(
        cfg,
        multirun=True,
        sweep_dir=tmp_path,
        job_num=0,
        task_overrides=["model.net.drop_rate=0.3"],
        argv=["-m", "model.net.drop_rate=0.1,0.3", "lr=0.001,0.01"],
        env={},
    )
    assert identity.hparams(cfg, ident) == {
        "lr": 0.001,
        "batch_size": 32,
        "model": "tf_efficientnet_lite0",
        "head": "classify",
        "image_size": 96,
        "epochs": 6,
        "data": "abid",
        "model.net.drop_rate": 0.3,
    }
    assert identity.data_label(["/a/abid", {"path": "s3://b/abid-more/", "squashed": True}]) == (
        "abid+abid-more"
    )


def test_the_kept_epoch_is_the_checkpoints_best_not_the_last():
    from types import SimpleNamespace

    from bincount.callbacks.history import ValHistory

    history = ValHistory()
    for epoch, acc in enumerate([0.25, 0.40625, 0.40625, 0.375]):
        trainer = SimpleNamespace(
            sanity_checking=False,
            callback_metrics={"val/acc": acc, "val/loss": 2.0 - epoch},
            current_epoch=epoch,
            global_step=3 * (epoch + 1),
        )
        history.on_validation_end(trainer, None)
    checkpoint = SimpleNamespace(monitor="val/acc", best_model_score=0.40625)
    assert history.kept(checkpoint) == {"epoch": 2, "step": 6, "val/acc": 0.40625, "val/loss": 1.0}
    assert history.last()["val/acc"] == 0.375
    assert history.kept(SimpleNamespace(monitor=None, best_model_score=None))["epoch"] == 4
    restored = ValHistory()
    restored.load_state_dict(history.state_dict())  # a resumed run knows its earlier epochs
    assert restored.kept(checkpoint)["epoch"] == 2


# ------------------------------------------------------------------ acceptance (issue 22)

TINY = (
    "experiment=smoke",
    "debug=limit",
    "data.image_size=32",
    "data.num_workers=0",
    "trainer.max_epochs=2",
    "test=false",
    "logger=many",
)


def tuner_lines(stdout: str, metric: str) -> dict[str, float]:
    """Each trial's objective as a SageMaker tuning job reads it: the last match of the
    metric definition's regex in that trial's log (a multirun's log, from Hydra's `#N : ...`
    launch line to the trial's `took ...` line: not the sweeper's own lines), by the trial's
    run name (the `run: ...  (name)` line)."""
    (definition,) = [d for d in metric_definitions() if d["Name"] == metric]
    out = {}
    for chunk in re.split(r"\n.*\[HYDRA\]\s+#\d+ : ", stdout)[1:]:
        chunk = re.split(r"^took \d+s; metrics in .*$", chunk, flags=re.M)[0]
        values = re.findall(definition["Regex"], chunk)
        name = re.search(r"^run: \S+  \((.+)\)$", chunk, re.M)
        assert values and name, chunk[-2000:]
        out[name.group(1)] = float(values[-1])
    return out


def run_sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.long
def test_a_grid_and_an_optuna_sweep_agree_in_every_dashboard(tiny_source, tmp_path):
    """Issue 22's acceptance: a 4-trial grid and a 3-trial Optuna sweep with logger=many,
    logging to a real MLflow server; then TensorBoard's HParams API, MLflow's REST API, the
    W&B offline run files, compare, metrics.json and the tuner's metric line all give each
    trial the same objective."""
    common = [
        *TINY,
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'outputs'}",
    ]
    grid_dir, hpo_dir = tmp_path / "multirun" / "grid", tmp_path / "multirun" / "hpo"
    with mlflow_server(tmp_path / "mlflow.db", tmp_path / "mlartifacts") as mlflow_url:
        common.append(f"logger.mlflow.tracking_uri={mlflow_url}")
        grid = run_sweep(
            "lr=0.001,0.01", "batch_size=4,8", *common, f"hydra.sweep.dir={grid_dir}", cwd=tmp_path
        )
        hpo = run_sweep(
            "+sweep=hpo",
            "hydra/sweeper=optuna",
            "sweep.max_trials=3",
            "sweep.seed=7",
            "sweep.params.batch_size.choices=[4,8]",
            *common,
            f"hydra.sweep.dir={hpo_dir}",
            cwd=tmp_path,
        )
        runs = mlflow_runs(mlflow_url)

    # metrics.json: the kept epoch's figures under val, the last epoch's under last
    by_name: dict[str, dict] = {}
    for sweep in (grid_dir, hpo_dir):
        for trial in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
            metrics = rundir.read_metrics(trial)
            assert metrics["val"]["val/acc"] == metrics["objective"]["value"]
            assert metrics["last"]["epoch"] == 2 and metrics["best_epoch"] in (1, 2)
            assert metrics["val"]["val/acc"] >= metrics["last"]["val/acc"]
            by_name[metrics["identity"]["name"]] = metrics
    assert len(by_name) == 7
    objective = {name: m["objective"]["value"] for name, m in by_name.items()}
    sweeps = {"grid-grid": 4, "hpo-hpo": 3}
    assert {m["identity"]["sweep"] for m in by_name.values()} == set(sweeps)

    # compare
    compared = {
        r.metrics["identity"]["name"]: compare_objective(r) for r in collect([grid_dir]).done
    }
    compared |= {
        r.metrics["identity"]["name"]: compare_objective(r) for r in collect([hpo_dir]).done
    }
    assert compared == objective

    # the tuner's metric line (SageMaker's regex over each trial's log)
    lines = tuner_lines(grid.stdout, "val/acc") | tuner_lines(hpo.stdout, "val/acc")
    assert lines == pytest.approx(objective, abs=1e-6)

    # MLflow: a parent run per sweep, its trials nested, every name distinct
    parents = {r["id"]: r for r in runs if r["tags"].get("role") == "sweep"}
    assert sorted(p["name"] for p in parents.values()) == sorted(sweeps)
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") in parents]
    counts = {}
    for c in children:
        parent = parents[c["tags"]["mlflow.parentRunId"]]["name"]
        counts[parent] = counts.get(parent, 0) + 1
        assert c["tags"]["sweep"] == parent and c["params"]["lr"] and c["params"]["batch_size"]
        assert len(c["params"]) <= 10  # the curated set
    assert counts == sweeps and len(runs) == 9
    assert len({r["name"] for r in runs}) == 9
    assert {c["name"]: c["metrics"]["objective"] for c in children} == objective
    for p in parents.values():  # the best trial so far, as the sweep's own objective
        mine = [
            objective[c["name"]] for c in children if c["tags"]["mlflow.parentRunId"] == p["id"]
        ]
        assert p["metrics"]["objective"] == max(mine) and p["status"] == "FINISHED"

    # TensorBoard: one HParams session per trial, with lr, batch size and the objective
    with tensorboard(tmp_path / "multirun") as tb_url:
        groups = hparams_sessions(tb_url, ["lr", "batch_size"], ["objective", "best/val/acc"])
    assert len(groups) == 7
    seen = {}
    for g in groups:
        assert {"lr", "batch_size", "model", "image_size", "epochs"} <= set(g["hparams"])
        values = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
        assert values["best/val/acc"] == values["objective"]
        (session,) = g["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        assert session["name"].split("/tensorboard/")[1] == g["name"].replace("/", "_")
        seen[g["name"]] = values["objective"]
    assert seen == pytest.approx(objective, abs=0)

    # W&B: each trial's offline run in its sweep's group, with the objective in its summary
    for sweep in (grid_dir, hpo_dir):
        for trial in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
            (wandb_file,) = trial.glob("wandb/offline-run-*/run-*.wandb")
            run = wandb_run(wandb_file)
            assert run.run_group == by_name[run.display_name]["identity"]["sweep"]
            assert run.job_type == "trial"
            assert wandb_summary(wandb_file)["objective"] == objective[run.display_name]
