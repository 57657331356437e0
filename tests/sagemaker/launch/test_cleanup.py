"""`bincount cleanup` against a real moto server: only what the project made (its tag, or named
by a job with its tag) goes, and only with --yes."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest
from sm_moto import BUCKET, REGION, ROLE, s3_keys

from bincount.sagemaker.launch.tags import project_tags

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


def test_lists_without_yes_then_deletes_only_the_projects_with_it(aws):
    sm = boto3.client("sagemaker", region_name=REGION)
    make_endpoint(sm, "ours", tagged=True)
    make_endpoint(sm, "theirs", tagged=False)
    everything = names(sm)

    listed = cleanup(stdin="y\n")  # no prompt: without --yes it only lists, whatever the input
    assert listed.returncode == 0 and "dry run: nothing stopped or deleted" in listed.stdout
    for line in (
        "endpoint         ours",
        "endpoint-config  ours-config",
        "model            ours-model",
    ):
        assert line in listed.stdout
    assert "theirs" not in listed.stdout
    assert names(sm) == everything
    assert not [r for r in aws.requests if r.target.startswith("SageMaker.Delete")]

    done = cleanup("--yes")
    assert done.returncode == 0, done.stderr
    assert names(sm) == {"theirs", "theirs-config", "theirs-model"}
    deletes = [r.target for r in aws.requests if r.target.startswith("SageMaker.Delete")]
    assert deletes == [
        "SageMaker.DeleteEndpoint",
        "SageMaker.DeleteEndpointConfig",
        "SageMaker.DeleteModel",
    ]
    again = cleanup("--yes")
    assert again.returncode == 0 and "to remove" in again.stdout


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


# ----- --all-tagged: running jobs and the S3 prefixes of the project's jobs too -----

ACCOUNT = "123456789012"  # moto's default account


def launch_job(tmp_path, name: str, *extra: str) -> str:
    """A real launch (the SDK through moto): its bundle is uploaded; returns the job's name."""
    from hydra import compose, initialize_config_dir

    from bincount.config import config_dir
    from bincount.sagemaker.launch.launcher import launch

    overrides = [
        f"sagemaker.bucket={BUCKET}",
        "sagemaker.instance_type=ml.m5.xlarge",
        f"data.source=s3://{BUCKET}/abid",
        *extra,
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=overrides)
    return launch(cfg, overrides, tmp_path / name, echo=lambda s: None).job_name


def moto_can_stop_jobs(monkeypatch) -> None:
    """moto (5.x) has no StopTrainingJob / StopHyperParameterTuningJob, and its jobs are
    Completed at once: its in-process server gets both operations, setting the status AWS
    answers with (Stopping); the requests still go through botocore, the proxy and moto's
    routing."""
    from moto.core.responses import EmptyResult
    from moto.sagemaker.responses import SageMakerResponse

    def stop_training_job(self):
        job = self.sagemaker_backend.training_jobs[self._get_param("TrainingJobName")]
        job.training_job_status = "Stopping"
        return EmptyResult()

    def stop_tuning_job(self):
        jobs = self.sagemaker_backend.hyper_parameter_tuning_jobs
        jobs[
            self._get_param("HyperParameterTuningJobName")
        ].hyper_parameter_tuning_job_status = "Stopping"
        return EmptyResult()

    monkeypatch.setattr(SageMakerResponse, "stop_training_job", stop_training_job, raising=False)
    monkeypatch.setattr(
        SageMakerResponse, "stop_hyper_parameter_tuning_job", stop_tuning_job, raising=False
    )


@pytest.mark.long
def test_all_tagged_stops_jobs_and_removes_endpoints_and_s3_prefixes_of_the_project_only(
    aws, tmp_path, monkeypatch
):
    """Acceptance: `bincount cleanup --all-tagged` lists, and with --yes removes, the project's
    running training and tuning jobs, endpoints and S3 prefixes (bundles, outputs, checkpoints),
    and nothing else: a foreign endpoint, a foreign job's output, a sibling prefix, the data and
    a foreign object survive."""
    from moto.sagemaker.models import sagemaker_backends

    moto_can_stop_jobs(monkeypatch)
    sm = boto3.client("sagemaker", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    make_endpoint(sm, "ours", tagged=True)
    make_endpoint(sm, "theirs", tagged=False)
    job = launch_job(tmp_path, "train", "sagemaker.spot=true")
    tuning = launch_job(tmp_path, "tune", "+sweep=hpo")
    backend = sagemaker_backends[ACCOUNT][REGION]
    backend.training_jobs[job].training_job_status = "InProgress"
    backend.hyper_parameter_tuning_jobs[tuning].hyper_parameter_tuning_job_status = "InProgress"
    described = sm.describe_training_job(TrainingJobName=job)
    output = described["OutputDataConfig"]["S3OutputPath"].removeprefix(f"s3://{BUCKET}/")
    checkpoints = described["CheckpointConfig"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
    # What SageMaker would have written, the user's data, and others' objects:
    ours = [f"{output}/{job}/output/model.tar.gz", f"{checkpoints}/last.ckpt"]
    foreign = [
        "abid/metadata/1.json",  # the data channel
        f"{output}/{job}-not-ours/output/model.tar.gz",  # a sibling that only starts alike
        "someone-else/notes.txt",
    ]
    for key in ours + foreign:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    sm.create_training_job(  # a foreign job, running, writing into the same output folder
        TrainingJobName="theirs-job",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/{output}"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        Tags=[{"Key": "team", "Value": "other"}],
    )
    backend.training_jobs["theirs-job"].training_job_status = "InProgress"
    s3.put_object(Bucket=BUCKET, Key=f"{output}/theirs-job/output/model.tar.gz", Body=b"x")
    foreign.append(f"{output}/theirs-job/output/model.tar.gz")
    before = set(s3_keys())
    bundles = {k for k in before if "/input/" in k}  # both launches' uploaded bundles
    assert [k for k in before if f"{job}/input/code/" in k], "the launch uploaded its bundle"

    listed = cleanup("--all-tagged")
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert f"training-job     {job}  (InProgress)" in out
    assert f"tuning-job       {tuning}  (InProgress)" in out
    assert "endpoint         ours" in out and "model            ours-model" in out
    assert f"s3-prefix        s3://{BUCKET}/{output}/{job}/" in out
    assert f"s3-prefix        s3://{BUCKET}/{checkpoints}/" in out
    assert "theirs" not in out and "someone-else" not in out and "not-ours" not in out
    assert set(s3_keys()) == before  # a dry run: nothing changed
    assert not [
        r for r in aws.requests if r.target.startswith(("SageMaker.Delete", "SageMaker.Stop"))
    ]

    done = cleanup("--all-tagged", "--yes")
    assert done.returncode == 0, done.stderr
    stops = [r.target for r in aws.requests if r.target.startswith("SageMaker.Stop")]
    assert stops == ["SageMaker.StopHyperParameterTuningJob", "SageMaker.StopTrainingJob"]
    assert [r.json() for r in aws.requests if r.target == "SageMaker.StopTrainingJob"] == [
        {"TrainingJobName": job}
    ]
    assert names(sm) == {"theirs", "theirs-config", "theirs-model"}
    left = set(s3_keys())
    assert left == set(foreign), sorted(left)
    assert not bundles & left
    assert backend.training_jobs["theirs-job"].training_job_status == "InProgress"

    # S3 by age: what is newer than --older-than stays (and says why)
    s3.put_object(Bucket=BUCKET, Key=f"{output}/{job}/output/model.tar.gz", Body=b"x")
    young = cleanup("--s3", "--older-than", "1d", "--yes")
    assert young.returncode == 0, young.stderr
    assert "kept: newer than 1 day" in young.stdout
    assert f"{output}/{job}/output/model.tar.gz" in s3_keys()


def test_a_bad_age_is_one_line(aws):
    proc = cleanup("--s3", "--older-than", "a week")
    assert proc.returncode == 2 and "is not an age: use e.g. 7d" in proc.stderr
