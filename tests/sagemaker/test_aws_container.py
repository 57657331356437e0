"""The launcher's real requests (captured by the moto server) run through AWS's own container
code: sm_train.sh + environment.py + the SDK's drivers for a job, the DLC's sagemaker-training
toolkit for a tuning trial. See container_harness.py for the layout and the redirections."""

from __future__ import annotations

import json
import re
import tarfile

import container_harness as harness
import pytest
import torch
from hydra import compose, initialize_config_dir

from bincount.config import config_dir
from bincount.sagemaker.launcher import launch

BUCKET = "bincount-test"
BASE = [
    f"sagemaker.bucket={BUCKET}",
    "sagemaker.instance_type=ml.m5.xlarge",
    f"data.source=s3://{BUCKET}/abid",
]
# Small enough for 2 shared CPU cores: 64 px, 8 images a split, batches of 4, no worker processes.
TINY = [
    "experiment=smoke",
    "data.image_size=64",
    "data.max_per_split=8",
    "data.num_workers=0",
    "batch_size=4",
]


def launched(aws, tmp_path, *overrides) -> dict:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=[*BASE, *overrides])
    launch(cfg, [*BASE, *overrides], tmp_path / "launch", echo=lambda s: None)
    return aws


def members(tar_path) -> set[str]:
    with tarfile.open(tar_path) as tar:
        return set(tar.getnames())


def test_the_acceptance_request_trains_through_sm_train_sh(aws, tmp_path, tiny_source):
    """`python launch_sagemaker.py trainer.max_epochs=1 +trainer.val_check_interval=0.5 lr=0.01`,
    as SageMaker would run it. Before the fix this died in sm_train.sh with
    `export: 'SM_HP_TRAINER.MAX_EPOCHS=1': not a valid identifier`."""
    overrides = ["trainer.max_epochs=1", "+trainer.val_check_interval=0.5", "lr=0.01", *TINY]
    launched(aws, tmp_path, *overrides)
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
