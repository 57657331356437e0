"""Helpers of tests/sagemaker (fixtures in conftest.py). A real moto server on 127.0.0.1
behind a real recording proxy: the SDK and boto3 talk to the proxy (AWS_ENDPOINT_URL), which
forwards every request to moto and keeps a copy, so tests assert on the requests AWS would have
received (moto does not keep every field, e.g. MetricDefinitions).
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGION = "eu-west-1"
BUCKET = "bincount-test"
# A launch against this server: the bucket, a CPU instance, the photos uploaded under abid/.
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
ROLE = "arn:aws:iam::123456789012:role/bincount-sagemaker"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def target(self) -> str:  # "SageMaker.CreateTrainingJob" for the JSON API
        return self.headers.get("x-amz-target", "")

    def json(self) -> dict:
        return json.loads(self.body or b"{}")

    def __getitem__(self, field: str):  # r["path"] as well as r.path
        return getattr(self, field)


class Recorder:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.moto = f"http://{upstream[0]}:{upstream[1]}"  # moto itself (its /moto-api)
        self.requests: list[Request] = []
        self.lock = threading.Lock()

    def sagemaker(self, action: str) -> list[dict]:
        with self.lock:
            return [r.json() for r in self.requests if r.target == f"SageMaker.{action}"]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


def _handler(recorder: Recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self):
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            lowered = {k.lower(): v for k, v in headers.items()}
            with recorder.lock:
                recorder.requests.append(Request(self.command, self.path, lowered, body))
            conn = http.client.HTTPConnection(*recorder.upstream, timeout=60)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

    return Handler


@pytest.fixture(scope="session")
def moto_proxy():
    from moto.server import ThreadedMotoServer

    add_missing_operations()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    recorder = Recorder(moto.get_host_and_port())
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield recorder, f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    moto.stop()


def aws_env(endpoint: str, tmp: Path) -> dict[str, str]:
    """Fake credentials and region, every client sent to the proxy, the SDK's telemetry off."""
    sdk_config = tmp / "sagemaker-config.yaml"
    sdk_config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n"
    )
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
        "SAGEMAKER_ROLE": ROLE,
    }


@pytest.fixture
def aws(moto_proxy, monkeypatch, tmp_path):
    """A clean moto account (with the bucket BUCKET) and the environment pointing at it."""
    recorder, endpoint = moto_proxy
    conn = http.client.HTTPConnection(*recorder.upstream)
    conn.request("POST", "/moto-api/reset")
    conn.getresponse().read()
    env = aws_env(endpoint, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    recorder.clear()
    recorder.env = env
    return recorder


def s3_keys(prefix: str = "") -> list[str]:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def s3_read(key: str) -> bytes:
    import boto3

    return boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()


# ----- What SageMaker records after a job's container ran (moto runs no container) -----
# moto keeps CreateTrainingJob and CreateHyperParameterTuningJob as sent but marks every
# training job Completed at once, with a fixed FinalMetricDataList and no FailureReason, gives a
# tuning job a fixed placeholder BestTrainingJob, and has no ListTrainingJobsForHyperParameter-
# TuningJob at all. The helpers below fill in, on moto's own records (the server runs in this
# process), what SageMaker's backend would after running the container through AWS's code (the
# harness): the status from the exit code, FailureReason from /opt/ml/output/failure (first
# 1024 characters), the final metrics read from the real log with the job's MetricDefinitions,
# and for a tuning job its trials (each a CreateTrainingJob of its TrainingJobDefinition plus
# the tuned values, as SageMaker starts them), their summaries and the best one.
ACCOUNT = "123456789012"


def backend():
    from moto.backends import get_backend

    return get_backend("sagemaker")[ACCOUNT][REGION]


def final_metrics(log: str, definitions: list[dict]) -> dict[str, float]:
    """SageMaker's FinalMetricDataList: the last value each definition's regex reads."""
    import re

    out = {}
    for d in definitions:
        values = re.findall(d["Regex"], log)
        if values:
            out[d["Name"]] = float(values[-1])
    return out


def job_ran(name: str, code: int, log: str, definitions: list[dict], failure: str | None):
    """Record a training job's outcome as SageMaker would: Completed or Failed, the reason,
    the final metrics."""
    from datetime import datetime

    job = backend().training_jobs[name]
    job.training_job_status = job.secondary_status = "Completed" if code == 0 else "Failed"
    if code != 0:
        job.failure_reason = (failure or f"AlgorithmError: exit status {code}")[:1024]
    now = datetime.now(UTC)
    job.final_metric_data_list = [
        {"MetricName": k, "Value": v, "Timestamp": now}
        for k, v in final_metrics(log, definitions).items()
    ]
    return job  # ModelArtifacts: moto sets <S3OutputPath>/<job>/output/model.tar.gz already


def start_trial(tuning_request: dict, trial: str, hyperparameters: dict[str, str]) -> None:
    """A trial as SageMaker starts it: a training job of the tuning job's definition."""
    import boto3

    d = tuning_request["TrainingJobDefinition"]
    algo = {k: v for k, v in d["AlgorithmSpecification"].items() if k != "MetricDefinitions"}
    algo["MetricDefinitions"] = d["AlgorithmSpecification"].get("MetricDefinitions", [])
    kwargs = {
        "TrainingJobName": trial,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": algo,
        "RoleArn": d["RoleArn"],
        "InputDataConfig": d["InputDataConfig"],
        "OutputDataConfig": d["OutputDataConfig"],
        "ResourceConfig": d["ResourceConfig"],
        "StoppingCondition": d["StoppingCondition"],
    }
    for key in ("CheckpointConfig", "Environment", "EnableManagedSpotTraining"):
        if key in d:
            kwargs[key] = d[key]
    boto3.client("sagemaker", region_name=REGION).create_training_job(**kwargs)
    tuning = backend().hyper_parameter_tuning_jobs[tuning_request["HyperParameterTuningJobName"]]
    tuning.__dict__.setdefault("trials", []).append(trial)


def trial_summary(tuning, name: str, tuned: dict[str, str]) -> dict:
    job = backend().training_jobs[name]
    objective = tuning.hyper_parameter_tuning_job_config["HyperParameterTuningJobObjective"]
    metrics = {m["MetricName"]: m["Value"] for m in job.final_metric_data_list}
    summary = {
        "TrainingJobName": name,
        "TrainingJobArn": job.arn,
        "TuningJobName": tuning.hyper_parameter_tuning_job_name,
        "CreationTime": job.creation_time,
        "TrainingJobStatus": job.training_job_status,
        "TunedHyperParameters": tuned,
        "ObjectiveStatus": "Succeeded" if objective["MetricName"] in metrics else "Failed",
    }
    if getattr(job, "failure_reason", None):
        summary["FailureReason"] = job.failure_reason
    if objective["MetricName"] in metrics:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": objective["Type"],
            "MetricName": objective["MetricName"],
            "Value": metrics[objective["MetricName"]],
        }
    return summary


def tuning_ran(tuning_name: str, tuned: dict[str, dict[str, str]]) -> None:
    """The tuning job's record once its trials ran: counters and SageMaker's best trial."""
    tuning = backend().hyper_parameter_tuning_jobs[tuning_name]
    summaries = [trial_summary(tuning, t, tuned[t]) for t in tuning.__dict__.get("trials", [])]
    tuning.summaries = summaries
    scored = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" in s]
    objective = tuning.hyper_parameter_tuning_job_config["HyperParameterTuningJobObjective"]
    pick = min if objective["Type"] == "Minimize" else max
    best = pick(
        scored,
        key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
        default=None,
    )
    tuning.best_training_job = best
    tuning.OverallBestTrainingJob = best
    failed = sum(s["TrainingJobStatus"] == "Failed" for s in summaries)
    tuning.training_job_status_counters = {
        "Completed": len(summaries) - failed,
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": failed,
        "Stopped": 0,
    }


def _list_training_jobs_for_tuning_job(self):
    """ListTrainingJobsForHyperParameterTuningJob, missing from moto: the trials recorded by
    tuning_ran (one page)."""
    from moto.core.responses import ActionResult

    name = self._get_param("HyperParameterTuningJobName")
    tuning = self.sagemaker_backend.hyper_parameter_tuning_jobs[name]
    return ActionResult({"TrainingJobSummaries": tuning.__dict__.get("summaries", [])})


def add_missing_operations() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = (
        _list_training_jobs_for_tuning_job
    )


def fail_new_training_jobs(monkeypatch, reason: str) -> None:
    """Every training job created from now on has failed (as SageMaker records a job whose
    container wrote `reason` to its failure file) by the first DescribeTrainingJob."""
    from moto.sagemaker.models import SageMakerModelBackend

    create = SageMakerModelBackend.create_training_job

    def failing(self, *args, **kwargs):
        job = create(self, *args, **kwargs)
        job.training_job_status = job.secondary_status = "Failed"
        job.failure_reason = reason[:1024]
        return job

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", failing)
