"""Deploy, invoke and delete against moto's SageMaker on 127.0.0.1, checked by the requests
it receives (the recording proxy of sm_moto.py in front of it). The packed archive served by
AWS's container code: test_endpoint_container.py."""

from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import tarfile
from urllib.parse import urlsplit

import boto3
import pytest
from sm_moto import BUCKET, REGION, ROLE, s3_read

from bincount import cli
from bincount.errors import BincountError
from bincount.sagemaker.launch import deploy
from bincount.settings import settings

PROJECT_TAG = {"Key": "bincount:project", "Value": "bincount"}


def test_deploy_serverless_invoke_and_delete(aws, trained_run, abid, tmp_path, capsys):
    out = deploy.deploy(
        str(trained_run),
        name="bincount-test",
        s3_prefix=f"s3://{BUCKET}/deploy",
        settings={**settings()["deploy"], "serverless": True},
        role=ROLE,
    )
    assert out["model_data"] == f"s3://{BUCKET}/deploy/bincount-test/model.tar.gz"

    # what SageMaker was asked for
    (model,) = aws.sagemaker("CreateModel")
    assert model["ModelName"] == "bincount-test" and model["ExecutionRoleArn"] == ROLE
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == out["model_data"]
    assert "pytorch-inference" in container["Image"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    (config,) = aws.sagemaker("CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert (
        variant["ServerlessConfig"]["MemorySizeInMB"]
        == settings()["deploy"]["serverless_memory_mb"]
    )
    assert "InstanceType" not in variant
    (endpoint,) = aws.sagemaker("CreateEndpoint")
    for call in (model, config, endpoint):
        assert PROJECT_TAG in call["Tags"]
    puts = {r.path.split("?")[0] for r in aws.requests if r.method == "PUT"}
    assert f"/{BUCKET}/deploy/bincount-test/model.tar.gz" in puts
    with tarfile.open(fileobj=io.BytesIO(s3_read("deploy/bincount-test/model.tar.gz"))) as tar:
        assert {"code/inference.py", "checkpoints/best.ckpt"} <= set(tar.getnames())

    # invoke: moto answers what it is told to; the request must carry the photo and quantity
    photo = abid / "bin-images" / "01843.jpg"
    canned = {
        "count": 3,
        "probabilities": {"3": 0.9},
        "confidence": 0.9,
        "mean_count": 3.0,
        "expected": 3,
        "p_expected": 0.9,
        "verdict": "match",
    }
    host, port = aws.upstream
    http_post_json(
        f"http://{host}:{port}/moto-api/static/sagemaker/endpoint-results",
        {
            "region": REGION,
            "results": [{"Body": json.dumps(canned), "ContentType": "application/json"}],
        },
    )
    csv_out = tmp_path / "endpoint.csv"
    code = cli.main(
        [
            "predict",
            "--endpoint",
            "bincount-test",
            str(photo),
            "--expected",
            "3",
            "--out",
            str(csv_out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (invoke,) = [r for r in aws.requests if r.path == "/endpoints/bincount-test/invocations"]
    assert invoke.headers["content-type"] == "application/json"
    sent = invoke.json()
    assert base64.b64decode(sent["image"]) == photo.read_bytes() and sent["expected"] == 3
    (row,) = csv.DictReader(csv_out.open())
    assert row["predicted"] == "3" and row["verdict"] == "match"

    # delete everything it created
    assert deploy.delete("bincount-test") == [
        "endpoint/bincount-test",
        "endpoint-config/bincount-test",
        "model/bincount-test",
    ]
    assert [c["EndpointName"] for c in aws.sagemaker("DeleteEndpoint")] == ["bincount-test"]
    assert len(aws.sagemaker("DeleteEndpointConfig")) == len(aws.sagemaker("DeleteModel")) == 1
    sm = boto3.client("sagemaker", region_name=REGION)
    with pytest.raises(sm.exceptions.ClientError):
        sm.describe_endpoint(EndpointName="bincount-test")
    assert deploy.delete("bincount-test") == []


def http_post_json(url: str, doc: dict) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", parts.path, json.dumps(doc), {"Content-Type": "application/json"})
    assert conn.getresponse().status < 300
    conn.close()


def test_realtime_deploy_of_a_training_jobs_archive(aws, trained_run, capsys):
    """A training job's model.tar.gz on S3 (the run folder's layout) is repacked with the code
    beside it and served on instances (the CLI, as a user runs it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(trained_run / "checkpoints" / "best.ckpt", "checkpoints/best.ckpt")
        tar.add(trained_run / "config.yaml", "config.yaml")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="jobs/j1/output/model.tar.gz", Body=buf.getvalue())
    code = cli.main(
        [
            "deploy",
            f"s3://{BUCKET}/jobs/j1/output/model.tar.gz",
            "--name",
            "bincount-rt",
            "--instance-type",
            "ml.c5.xlarge",
            "--role",
            ROLE,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "bincount cleanup --endpoint bincount-rt" in capsys.readouterr().out
    (config,) = aws.sagemaker("CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.c5.xlarge", 1)
    assert "ServerlessConfig" not in variant
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert "jobs/j1/output/bincount-rt/model.tar.gz" in keys


def test_deploy_says_what_is_missing(aws, trained_run, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_ROLE")
    conf = settings()["deploy"]
    with pytest.raises(BincountError, match="IAM role"):
        deploy.deploy(str(trained_run), s3_prefix=f"s3://{BUCKET}/x", settings=conf)
    with pytest.raises(BincountError, match="--s3-prefix"):
        deploy.deploy(str(trained_run), settings=conf, role=ROLE)
    with pytest.raises(BincountError, match="endpoint name"):
        deploy.deploy(
            str(trained_run),
            name="no_underscores!",
            s3_prefix=f"s3://{BUCKET}/x",
            settings=conf,
            role=ROLE,
        )
    assert not aws.sagemaker("CreateModel")


def test_an_endpoint_in_a_vpc_with_a_key_dry_run_then_sent(aws, tmp_path, capsys):
    """deploy.subnets/security_groups/kms_key/network_isolation reach CreateModel's VpcConfig
    and EnableNetworkIsolation and CreateEndpointConfig's KmsKeyId: first as a dry run (nothing
    sent, validated against botocore's model), then for real on moto."""
    from bincount.sagemaker.launch.capture import validate

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"packed as a file, never loaded here")
    (run / "config.yaml").write_text("model: {}\n")
    account = {
        "subnets": ["subnet-0123456789abcdef0"],
        "security_groups": ["sg-0123456789abcdef0"],
        "kms_key": "alias/bincount-team",
        "network_isolation": True,
    }
    kwargs = dict(
        name="bincount-vpc",
        s3_prefix=f"s3://{BUCKET}/deploy",
        settings={**settings()["deploy"], **account},
        instance_type="ml.m5.large",
        role=ROLE,
    )
    out = deploy.deploy(str(run), dry_run=True, **kwargs)
    assert aws.requests == []
    requests = out["requests"]
    for op, params in requests.items():
        assert validate(op, params) == [], op
    vpc = {"Subnets": account["subnets"], "SecurityGroupIds": account["security_groups"]}

    def check(model, config):
        assert model["VpcConfig"] == vpc and model["EnableNetworkIsolation"] is True
        assert config["KmsKeyId"] == "alias/bincount-team"

    check(requests["CreateModel"], requests["CreateEndpointConfig"])
    assert (
        cli.main(
            [
                "deploy",
                str(run),
                "--s3-prefix",
                f"s3://{BUCKET}/d",
                "--role",
                ROLE,
                "--instance-type",
                "ml.m5.large",
                "--dry-run",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "CreateEndpointConfig: valid against botocore's SageMaker service model" in printed
    assert aws.requests == []

    deploy.deploy(str(run), **kwargs)
    (model,) = aws.sagemaker("CreateModel")
    (config,) = aws.sagemaker("CreateEndpointConfig")
    check(model, config)
    (put,) = [r for r in aws.requests if r.method == "PUT" and r.path.endswith("model.tar.gz")]
    assert put.headers.get("x-amz-server-side-encryption") == "aws:kms"
    with pytest.raises(BincountError, match=r"deploy\.vpc needs both"):
        deploy.deploy(
            str(run),
            dry_run=True,
            **{**kwargs, "settings": {**settings()["deploy"], "subnets": account["subnets"]}},
        )
