"""logger=tensorboard|wandb|mlflow|many: CSV always on, each tracker writes its files offline
(TensorBoard event file, W&B offline run folder, MLflow local store) with the resolved config."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict
from runner import run_train

from bincount.training.fit import end_tracker_runs
from bincount.training.hydra import instantiate_dict


def log_a_run(cfg) -> list:
    """What train() does with its loggers: the resolved config, then metrics, then finalize."""
    loggers = instantiate_dict(cfg.logger)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_metrics({"val/acc": 0.25}, step=0)
        lg.log_metrics({"val/acc": 0.5}, step=1)
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


def test_every_tracker_writes_offline(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg("logger=many", "lr=0.0123")
    out = Path(cfg.paths.output_dir)
    log_a_run(cfg)

    assert "val/acc" in (out / "csv" / "metrics.csv").read_text()
    assert "lr: 0.0123" in (out / "csv" / "hparams.yaml").read_text()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "lr: 0.0123" in (out / "tensorboard" / "hparams.yaml").read_text()

    (wandb_run,) = (out / "wandb").glob("offline-run-*")
    assert list(wandb_run.glob("run-*.wandb"))  # what `wandb sync` uploads

    store = tmp_path / "outputs" / "mlflow.db"  # paths.log_dir/mlflow.db
    with sqlite3.connect(store) as db:
        params = dict(db.execute("select key, value from params").fetchall())
        metrics = db.execute("select key, value from metrics where key='val/acc'").fetchall()
        experiments = [r[0] for r in db.execute("select name from experiments")]
    assert params["lr"] == "0.0123" and params["model/backbone"] == "tf_efficientnet_lite0"
    assert sorted(v for _, v in metrics) == [0.25, 0.5]
    assert "bincount" in experiments


def test_each_trial_of_a_multirun_gets_its_own_wandb_run(make_cfg, tmp_path, monkeypatch):
    """Hydra runs a multirun's trials in one process: train() ends the W&B run of each."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    for trial in ("0", "1"):
        cfg = make_cfg("logger=wandb")
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "sweep" / trial)
        log_a_run(cfg)
    runs = [list((tmp_path / "sweep" / t / "wandb").glob("offline-run-*")) for t in ("0", "1")]
    assert [len(r) for r in runs] == [1, 1]
    assert runs[0][0].name.rsplit("-", 1)[1] != runs[1][0].name.rsplit("-", 1)[1]


@pytest.mark.slow
def test_training_with_every_logger(tiny_source, tmp_path):
    """A real tiny training with logger=many (about a minute)."""
    run = tmp_path / "run"
    proc = run_train(
        "logger=many",
        "experiment=smoke",
        "debug=limit",
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"hydra.run.dir={run}",
        "data.image_size=64",
        "data.num_workers=0",
        env={"WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    with sqlite3.connect(tmp_path / "outputs" / "mlflow.db") as db:
        keys = {r[0] for r in db.execute("select key from metrics")}
    assert {"val/acc", "test/acc"} <= keys
