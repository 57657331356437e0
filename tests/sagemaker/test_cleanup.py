"""`bincount cleanup` against a real moto server: only what carries the project tag goes."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
from sm_moto import REGION, ROLE

from bincount.sagemaker.tags import project_tags

IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.10.0-cpu-py313"


def make_endpoint(sm, name: str, tagged: bool) -> None:
    tags = project_tags() if tagged else [{"Key": "team", "Value": "other"}]
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"},
        Tags=tags,
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "all",
                "ModelName": f"{name}-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        Tags=tags,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config", Tags=tags)


def names(sm) -> set[str]:
    return (
        {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
        | {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
        | {m["ModelName"] for m in sm.list_models()["Models"]}
    )


def cleanup(*argv, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "bincount.cli", "cleanup", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_lists_then_deletes_only_the_projects_after_confirmation(aws):
    sm = boto3.client("sagemaker", region_name=REGION)
    make_endpoint(sm, "ours", tagged=True)
    make_endpoint(sm, "theirs", tagged=False)
    everything = names(sm)

    refused = cleanup(stdin="n\n")
    assert refused.returncode == 1 and "nothing deleted" in refused.stdout
    for line in (
        "endpoint         ours",
        "endpoint-config  ours-config",
        "model            ours-model",
    ):
        assert line in refused.stdout
    assert "theirs" not in refused.stdout
    assert names(sm) == everything
    assert not [r for r in aws.requests if r.target.startswith("SageMaker.Delete")]

    done = cleanup(stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert names(sm) == {"theirs", "theirs-config", "theirs-model"}
    deletes = [r.target for r in aws.requests if r.target.startswith("SageMaker.Delete")]
    assert deletes == [
        "SageMaker.DeleteEndpoint",
        "SageMaker.DeleteEndpointConfig",
        "SageMaker.DeleteModel",
    ]
    again = cleanup("--yes")
    assert again.returncode == 0 and "nothing to delete" in again.stdout


def test_one_endpoint_with_its_config_and_model(aws):
    sm = boto3.client("sagemaker", region_name=REGION)
    make_endpoint(sm, "a", tagged=True)
    make_endpoint(sm, "b", tagged=True)
    proc = cleanup("--endpoint", "a", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert names(sm) == {"b", "b-config", "b-model"}
    missing = cleanup("--endpoint", "nope", "--yes")
    assert missing.returncode == 2 and "no endpoint 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
