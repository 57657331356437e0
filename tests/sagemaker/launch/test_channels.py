"""A manifest channel (only the listed photos) from the launcher's real request, copied as
SageMaker copies a ManifestFile channel in File mode (container_harness._manifest_download),
then trained on through AWS's sm_train.sh."""

from __future__ import annotations

import json

import boto3
import container_harness as harness
import pytest
import sm_moto
from hydra import compose, initialize_config_dir
from sm_moto import BUCKET, REGION

from bincount.config import config_dir
from bincount.sagemaker.launch.launcher import launch

TINY = [*sm_moto.TINY, "test=false"]


@pytest.mark.long
def test_the_job_reads_only_the_photos_of_its_manifest(aws, tmp_path, tiny_source):
    s3 = boto3.client("s3", region_name=REGION)
    for path in tiny_source.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"abid/{path.relative_to(tiny_source)}")
    all_ids = sorted(p.stem for p in (tiny_source / "metadata").glob("*.json"))
    listed = all_ids[::2]  # 20 of the 40: the run reads these only
    id_list = tmp_path / "ids.json"
    id_list.write_text(json.dumps(listed))
    overrides = [
        f"sagemaker.bucket={BUCKET}",
        "sagemaker.instance_type=ml.m5.xlarge",
        f"data.source=s3://{BUCKET}/abid",
        f"data.file_list={id_list}",
        *TINY,
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=overrides)
    launch(cfg, overrides, tmp_path / "launch", echo=lambda s: None)
    [request] = aws.sagemaker("CreateTrainingJob")
    data = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "data")
    assert data["DataSource"]["S3DataSource"]["S3DataType"] == "ManifestFile"

    container = harness.training_job(request, tmp_path / "opt-ml", tiny_source, aws.env)
    channel = container.root / "input" / "data" / "data"
    assert sorted(p.stem for p in (channel / "bin-images").glob("*.jpg")) == listed
    code = container.run(timeout=600)
    log = container.output()
    assert code == 0, log[-5000:]
    config = (container.root / "model" / "config.yaml").read_text()
    assert f"source: {channel}" in config and "file_list: null" in config
