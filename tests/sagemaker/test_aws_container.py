"""The launcher's real requests (captured by the moto server) run through AWS's own container
code: sm_train.sh + environment.py + the SDK's drivers for a job, the DLC's sagemaker-training
toolkit for a tuning trial. See container_harness.py for the layout and the redirections."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import time

import container_harness as harness
import pytest
import sm_moto
import torch
from hydra import compose, initialize_config_dir

from bincount.config import config_dir, project_root
from bincount.sagemaker.launch.launcher import launch

BUCKET = sm_moto.BUCKET
BASE = sm_moto.BASE
LAUNCHER = str(project_root() / "launch_sagemaker.py")
TINY = sm_moto.TINY


def launched(aws, tmp_path, *overrides) -> dict:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=[*BASE, *overrides])
    launch(cfg, [*BASE, *overrides], tmp_path / "launch", echo=lambda s: None)
    return aws


def members(tar_path) -> set[str]:
    with tarfile.open(tar_path) as tar:
        return set(tar.getnames())


@pytest.mark.long
def test_the_acceptance_request_trains_through_sm_train_sh(aws, tmp_path, tiny_source, make_cfg):
    """`python launch_sagemaker.py trainer.max_epochs=1 +trainer.val_check_interval=0.5 lr=0.01`,
    as SageMaker would run it. Before the fix this died in sm_train.sh with
    `export: 'SM_HP_TRAINER.MAX_EPOCHS=1': not a valid identifier`."""
    overrides = ["trainer.max_epochs=1", "+trainer.val_check_interval=0.5", "lr=0.01", *TINY]
    proc = subprocess.run(  # the command line itself, as a user types it
        [sys.executable, LAUNCHER, *overrides, *BASE, f"hydra.run.dir={tmp_path / 'launch'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [request] = aws.sagemaker("CreateTrainingJob")
    container = harness.training_job(request, tmp_path / "opt-ml", tiny_source, aws.env)
    code = container.run(timeout=600)
    log = container.output()
    assert code == 0, log[-5000:]
    assert "Running Basic Script driver" in log  # AWS's script really ran, and its driver
    assert "not a valid identifier" not in log
    # The job trained with the overrides as `python train.py` would have read them.
    model = container.root / "model"
    config = (model / "config.yaml").read_text()
    assert re.search(r"^  max_epochs: 1$", config, re.M)
    assert re.search(r"^  val_check_interval: 0.5$", config, re.M)
    assert re.search(r"^lr: 0.01$", config, re.M)
    # ... and as `python train.py <the same overrides>` composes it, but for where things are.
    import yaml

    remote = yaml.safe_load(config)
    local = make_cfg(*overrides, f"data.source={tiny_source}")
    for key in ("lr", "batch_size", "optimized_metric", "optimized_mode", "seed"):
        assert remote[key] == local[key], key
    assert remote["model"]["_target_"] == local.model._target_
    assert remote["data"]["image_size"] == local.data.image_size == 64
    assert remote["data"]["source"] == str(container.root / "input/data/data")
    # Two validations in the one epoch (val_check_interval=0.5): two rows of val metrics.
    rows = (model / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val_rows = [r for r in rows[1:] if r.split(",")[header.index("val/acc")]]
    assert len(val_rows) == 2
    # What SageMaker uploads: model.tar.gz = the run folder the serving side loads.
    uploads = container.uploads()
    assert {"config.yaml", "metrics.json", "checkpoints/best.ckpt"} <= members(
        uploads["model.tar.gz"]
    )
    assert "metrics.json" in members(uploads["output.tar.gz"])
    ckpt = torch.load(model / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["preprocess"]["image_size"] == 64
    # The metric lines the job's MetricDefinitions read, from the real log.
    regex = {m["Name"]: m["Regex"] for m in request["AlgorithmSpecification"]["MetricDefinitions"]}
    values = [float(v) for v in re.findall(regex["val/acc"], log)]
    metrics = json.loads((model / "metrics.json").read_text())
    assert values and values[-1] == pytest.approx(metrics["objective"]["value"], abs=1e-4)


@pytest.mark.long
def test_every_override_shape_reaches_the_job_through_sm_train_sh(aws, tmp_path, tiny_source):
    shapes = [
        "trainer.max_epochs=1",  # a.b=1
        "+trainer.limit_train_batches=2",  # +a.b=1
        "~callbacks.lr_monitor",  # ~a
        "+extra.items=[1,2,'x y']",  # a list
        '+extra.quoted="it\'s a \\"b\\" c"',  # spaces, both quotes
        "+extra.eq='k=v=w'",  # `=` in the value
        "+extra.shell='$HOME `id` $(id)'",  # nothing a shell would expand
        "test=false",
    ]
    launched(aws, tmp_path, *TINY, *shapes)
    [request] = aws.sagemaker("CreateTrainingJob")
    assert list(request["HyperParameters"]) == ["bincount_overrides"]
    container = harness.training_job(request, tmp_path / "opt-ml", tiny_source, aws.env)
    code = container.run(timeout=600)
    assert code == 0, container.output()[-5000:]
    import yaml

    config = yaml.safe_load((container.root / "model" / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 1
    assert config["trainer"]["limit_train_batches"] == 2
    assert "lr_monitor" not in config["callbacks"]
    assert config["extra"] == {
        "items": [1, 2, "x y"],
        "quoted": 'it\'s a "b" c',
        "eq": "k=v=w",
        "shell": "$HOME `id` $(id)",
    }


@pytest.mark.long
def test_a_tuning_trial_runs_in_the_dlc_toolkit_and_minimises(aws, tmp_path, tiny_source):
    """A trial of `+sweep=hpo optimized_metric=val/rmse sweep.objective.direction=minimize` with
    spot: the PyTorch DLC's toolkit (sagemaker-training + sagemaker-pytorch-training) runs
    sagemaker_program with the tuner's picks and `_tuning_objective_metric`."""
    launched(
        aws,
        tmp_path,
        *TINY,
        "trainer.max_epochs=2",
        "test=false",
        "+sweep=hpo",
        "optimized_metric=val/rmse",
        "sweep.objective.direction=minimize",
        "sagemaker.spot=true",
    )
    [request] = aws.sagemaker("CreateHyperParameterTuningJob")
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize",
        "MetricName": "val/rmse",
    }
    trial = "bincount-hpo-001-a1b2c3d4"
    tuned = {"lr": "0.02", "batch_size": "4"}
    container = harness.tuning_trial(
        request, tmp_path / "opt-ml", tiny_source, aws.env, tuned, job_name=trial
    )
    code = container.run(timeout=600)
    log = container.output()
    assert code == 0, log[-5000:]
    assert "Invoking user training script" in log  # sagemaker-pytorch-training's own line
    assert "_tuning_objective_metric value val/rmse" in log  # the toolkit read it
    model = container.root / "model"
    import yaml

    cfg = yaml.safe_load((model / "config.yaml").read_text())
    assert (cfg["lr"], cfg["batch_size"], cfg["optimized_mode"]) == (0.02, 4, "min")
    assert cfg["callbacks"]["model_checkpoint"]["mode"] == "min"
    # What the tuner reads: every val/rmse line, the last one the bridge's best (the smallest).
    definitions = request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    regex = {m["Name"]: m["Regex"] for m in definitions}["val/rmse"]
    values = [float(v) for v in re.findall(regex, log)]
    epochs = [float(v) for v in re.findall(r"epoch \d+/2 .*?val/rmse=([0-9.]+)", log)]
    assert len(epochs) == 2 and values[-1] == pytest.approx(min(epochs), abs=1e-4)
    # The exported model is the best (smallest val/rmse) checkpoint of the two epochs.
    best = torch.load(model / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)
    state = next(v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert state["best_model_score"].item() == pytest.approx(min(epochs), abs=1e-3)
    assert best["epoch"] == epochs.index(min(epochs))
    # Spot: the trial's checkpoints sit in its own subfolder of the one CheckpointConfig that
    # SageMaker restores into every trial; what it uploads is the model, output and that folder.
    assert (container.checkpoint_dir / trial / "last.ckpt").is_file()
    assert [p.name for p in container.checkpoint_dir.iterdir()] == [trial]
    uploads = container.uploads()
    assert "checkpoints/best.ckpt" in members(uploads["model.tar.gz"])


@pytest.mark.slow
def test_two_hosts_run_the_torchrun_driver_on_disjoint_shards_to_the_same_weights(
    aws, tmp_path, tiny_source
):
    launched(aws, tmp_path, *TINY, "data.max_per_split=16", "trainer.max_epochs=1", "sagemaker=ddp")
    [request] = aws.sagemaker("CreateTrainingJob")
    assert request["ResourceConfig"]["InstanceCount"] == 2
    hosts = ("algo-1", "algo-2")
    master = ("127.0.0.1", harness.free_port())
    containers = [
        harness.training_job(
            request, tmp_path / h, tiny_source, aws.env, host=h, hosts=hosts, master=master
        )
        for h in hosts
    ]
    procs = [c.popen() for c in containers]
    codes = [c.wait(p, timeout=900) for c, p in zip(containers, procs, strict=True)]
    for c, code in zip(containers, codes, strict=True):
        assert code == 0, c.output()[-5000:]
        assert "Running Torchrun Driver" in c.output()
    records = [
        json.loads((c.root / "output/data/ranks" / f"rank-{r}.json").read_text())
        for r, c in enumerate(containers)
    ]
    first, second = records
    assert (first["host"], second["host"]) == hosts
    assert first["world_size"] == second["world_size"] == 2
    shard1, shard2 = set(first["epochs"][0]["ids"]), set(second["epochs"][0]["ids"])
    assert len(shard1) == len(shard2) == 8 and not shard1 & shard2  # 16 images, half each
    # The same weights and buffers on both hosts after training.
    assert first["params_sha256"] == second["params_sha256"]
    assert first["buffers_sha256"] == second["buffers_sha256"]
    assert first["global_step"] == second["global_step"] > 0
    # The first host uploads the model; the second's model/ stays empty.
    assert "checkpoints/best.ckpt" in members(containers[0].uploads()["model.tar.gz"])
    assert not any((containers[1].root / "model").iterdir())


@pytest.mark.slow
def test_a_spot_job_killed_mid_training_resumes_at_the_next_epoch(aws, tmp_path, tiny_source):
    launched(aws, tmp_path, *TINY, "trainer.max_epochs=3", "test=false", "sagemaker.spot=true")
    [request] = aws.sagemaker("CreateTrainingJob")
    job = "bincount-spot-20261126"
    container = harness.training_job(
        request, tmp_path / "opt-ml", tiny_source, aws.env, job_name=job
    )
    last = container.checkpoint_dir / job / "last.ckpt"
    proc = container.popen()
    deadline = time.monotonic() + 600
    saved = None
    while saved is None and time.monotonic() < deadline:
        assert proc.poll() is None, container.output()[-4000:]
        if last.is_file():
            try:
                saved = torch.load(last, map_location="cpu", weights_only=False)
            except Exception:  # still being written
                time.sleep(0.1)
        else:
            time.sleep(0.2)
    container.kill(proc)
    assert saved is not None and saved["epoch"] == 0
    steps_per_epoch = saved["global_step"]
    container.fresh_instance()
    assert container.run(timeout=900) == 0, container.output()[-5000:]
    second = container.output().split("Starting training script")[-1]
    assert "resuming from" in second and "Restoring states from the checkpoint" in second
    assert [int(e) for e in re.findall(r"epoch (\d+)/3", second)] == [2, 3]
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["epoch"] == 2 and final["global_step"] == 3 * steps_per_epoch
    uploads = container.uploads()
    assert "checkpoints/best.ckpt" in members(uploads["model.tar.gz"])
    assert (uploads["checkpoints"] / job / "last.ckpt").is_file()
