"""`bincount pull`: a tuning job whose trials ran through AWS's container code (the harness)
comes home as local run folders that compare ranks; a training job's TensorBoard events stream
to its TensorBoard S3 prefix. SageMaker's records live in moto; what moto does not keep (status,
final metrics, failure reasons, a tuning job's trials) is recorded by sm_moto as SageMaker's
backend would (see the comment there)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import container_harness as harness
import pytest
import sm_moto
from hydra import compose, initialize_config_dir

from bincount.cli import main as cli
from bincount.config import config_dir, project_root
from bincount.logged_metrics import EPOCH, TEST
from bincount.reports import compare
from bincount.sagemaker.launch.launcher import launch
from bincount.sagemaker.launch.pull import RECORD, pull

BASE, TINY = sm_moto.BASE, sm_moto.TINY


def launched(tmp_path, *overrides) -> str:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=[*BASE, *overrides])
    return launch(cfg, [*BASE, *overrides], tmp_path / "launch", echo=lambda s: None).job_name


def definitions_of(request: dict) -> list[dict]:
    algo = request.get("TrainingJobDefinition", request)["AlgorithmSpecification"]
    return algo["MetricDefinitions"]


@pytest.mark.long
def test_a_tuning_job_comes_home_as_run_folders_that_compare_ranks(
    aws, tmp_path, tiny_source, capsys
):
    name = launched(
        tmp_path,
        *TINY,
        "trainer.max_epochs=2",
        "logger=tensorboard",
        "+sweep=hpo",
        "optimized_metric=val/macro_acc",
    )
    [request] = aws.sagemaker("CreateHyperParameterTuningJob")
    assert request["HyperParameterTuningJobName"] == name and len(name) <= 32
    definitions = definitions_of(request)
    # Two trials, as the tuner would start them, run through the DLC's toolkit.
    tuned = {f"{name}-001-a1b2c3d4": {"lr": "0.05"}, f"{name}-002-e5f6a7b8": {"lr": "0.002"}}
    for i, (trial, picks) in enumerate(tuned.items()):
        picks = {**picks, "batch_size": "4"}
        tuned[trial] = picks
        sm_moto.start_trial(request, trial, harness.trial_hyperparameters(request, picks))
        container = harness.tuning_trial(
            request, tmp_path / f"opt-ml-{i}", tiny_source, aws.env, picks, job_name=trial
        )
        code = container.run(timeout=900)
        log = container.output()
        assert code == 0, log[-5000:]
        # Every figure the trainer prints has a definition that reads it from the real log.
        read = sm_moto.final_metrics(log, definitions)
        assert set(read) == set(EPOCH + TEST), set(EPOCH + TEST) ^ set(read)
        epochs = re.findall(r"epoch \d+/2 .*", log)
        for figure in EPOCH:
            regex = next(d["Regex"] for d in definitions if d["Name"] == figure)
            assert all(re.search(regex, line) for line in epochs), figure
        container.to_s3(request["TrainingJobDefinition"], trial)
        sm_moto.job_ran(trial, code, log, definitions, container.failure())
    sm_moto.tuning_ran(name, tuned)

    dest = tmp_path / "pulled"
    assert cli(["pull", name, "-o", str(dest)]) == 0
    out = capsys.readouterr().out
    print(out)  # what the user sees (pytest -s)
    pulled = pull(name, sm_moto.REGION, dest, files=False)
    assert pulled.kind == "tuning job" and pulled.metric == "val/macro_acc"
    assert {t.name for t in pulled.trials} == set(tuned)
    for t in pulled.trials:
        assert t.status == "Completed" and t.objective is not None
        assert t.tuned == tuned[t.name]
        assert t.final_metrics["val/macro_acc"] == pytest.approx(t.objective)
    best = pulled.best
    assert best is not None and best.name == max(pulled.trials, key=lambda t: t.objective).name
    assert f"best: {best.name}" in out
    assert f"lr={tuned[best.name]['lr']}" in out and "reproduce: python train.py" in out
    assert "optimized_metric=val/macro_acc" in best.reproduce()
    assert f"data.source=s3://{sm_moto.BUCKET}/abid/" in best.reproduce()
    # Local run folders: config.yaml, metrics.json, the checkpoint, the trackers, the record.
    for trial in tuned:
        run = dest / trial
        assert (run / "config.yaml").is_file() and (run / "checkpoints/best.ckpt").is_file()
        assert list(
            (run / "tensorboard").rglob("events.out.tfevents*")
        )  # <run>/tensorboard/<name>/
        record = json.loads((run / RECORD).read_text())
        assert record["status"] == "Completed" and record["tuned"] == tuned[trial]
    # compare ranks them as the tuner did: the same best, the same objective values.
    runs = compare.collect([dest])
    assert len(runs.done) == 2
    assert compare.objective(runs.done[0]) == pytest.approx(best.objective, abs=1e-4)
    for r in runs.done:
        trial = next(t for t in pulled.trials if t.name == r.path.name)
        assert compare.objective(r) == pytest.approx(trial.objective, abs=1e-4)
    # evaluate reads a pulled folder as it reads a local run.
    import yaml

    cfg = yaml.safe_load((dest / best.name / "config.yaml").read_text())
    assert cfg["lr"] == float(tuned[best.name]["lr"])


@pytest.mark.long
def test_a_training_job_streams_tensorboard_to_its_s3_prefix_and_pulls(aws, tmp_path, tiny_source):
    name = launched(
        tmp_path, *TINY, "trainer.max_epochs=1", "test=false", "logger=tensorboard", "lr=0.01"
    )
    [request] = aws.sagemaker("CreateTrainingJob")
    assert request["TrainingJobName"] == name and len(name) <= 63
    tb = request["TensorBoardOutputConfig"]
    assert tb["LocalPath"] == "/opt/ml/output/tensorboard"
    container = harness.training_job(request, tmp_path / "opt-ml", tiny_source, aws.env)
    code = container.run(timeout=900)
    log = container.output()
    assert code == 0, log[-5000:]
    # The trainer's TensorBoard logger wrote to SageMaker's LocalPath (what it streams).
    local = list(container.tensorboard_dir.rglob("events.out.tfevents*"))
    assert local, log[-3000:]
    container.to_s3(request, name)
    sm_moto.job_ran(name, code, log, definitions_of(request), container.failure())
    prefix = f"{tb['S3OutputPath'].removeprefix(f's3://{sm_moto.BUCKET}/')}/{name}/"
    streamed = [k for k in sm_moto.s3_keys(prefix) if "tfevents" in k]
    assert streamed and all("/tensorboard-output/" in k for k in streamed)
    pulled = pull(name, sm_moto.REGION, tmp_path / "run")
    [trial] = pulled.trials
    assert pulled.kind == "training job" and trial.status == "Completed"
    assert sorted(trial.tensorboard_events) == sorted(
        f"s3://{sm_moto.BUCKET}/{k}" for k in streamed
    )
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "checkpoints/best.ckpt").is_file()
    assert trial.objective == pytest.approx(
        json.loads((run / "metrics.json").read_text())["objective"]["value"]
    )
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))  # <run>/tensorboard/<name>/


def test_pull_of_an_unknown_job_is_one_line(aws, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bincount.cli", "pull", "no-such-job", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project_root(),
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no training or tuning job named no-such-job")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_managed_mlflow_arn_is_a_tracking_uri_through_the_plugin(monkeypatch):
    """logger.mlflow.tracking_uri=<ARN of a SageMaker managed MLflow server>: with the
    sagemaker-mlflow plugin (what the bundle installs in the job when the config names an ARN),
    MLflow resolves the ARN to SageMaker's MLflow store of that region (no call is made)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"
    store = MlflowClient(tracking_uri=arn)._tracking_client.store
    assert type(store).__name__ == "MlflowSageMakerStore"
    assert store.get_host_creds().host == "https://eu-west-1.experiments.sagemaker.aws"
