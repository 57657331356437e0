"""One region rule (bincount.sagemaker.launch.region) with a real boto3 reading a real AWS config
file, and the four commands that use it: the launcher, deploy, predict --endpoint, cleanup."""

from __future__ import annotations

import re

import pytest
from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES
from sm_moto import aws_env

from bincount import cli
from bincount.errors import BincountError
from bincount.sagemaker.launch import cleanup, deploy, region, spec

AWS_VARS = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "BINCOUNT_ROOT",
)
CONFIG = """\
[default]
region = ap-south-1

[profile other]
region = sa-east-1

[profile bare]
output = json
"""


@pytest.fixture
def profile_env(monkeypatch, tmp_path):
    """No AWS variable set; a real config file with profiles, no credentials, no IMDS."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "aws-config").write_text(CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing leaves the machine
    sdk = aws_env("http://127.0.0.1:9", tmp_path)  # the SageMaker SDK's telemetry off
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", sdk["SAGEMAKER_USER_CONFIG_OVERRIDE"])
    return monkeypatch


def test_precedence_given_then_aws_region_then_default_region_then_profile(profile_env):
    assert region.resolve(None) == "ap-south-1"  # the default profile, read by botocore
    profile_env.setenv("AWS_PROFILE", "other")
    assert region.resolve(None) == "sa-east-1"
    profile_env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert region.resolve(None) == "eu-central-1"
    profile_env.setenv("AWS_REGION", "eu-west-2")
    assert region.resolve(None) == "eu-west-2"
    assert region.resolve("us-west-2") == "us-west-2"
    profile_env.setenv("AWS_REGION", "")  # set but empty: the next source
    assert region.resolve(None) == "eu-central-1"


def test_no_region_names_only_what_is_read(profile_env):
    profile_env.setenv("AWS_PROFILE", "bare")
    with pytest.raises(BincountError) as e:
        region.resolve(None, "sagemaker.region", "sagemaker.region=eu-west-1")
    message = str(e.value)
    assert "sagemaker.region=eu-west-1" in message and "aws configure" in message
    named = set(re.findall(r"\bAWS_[A-Z_]+", message))
    assert named == {"AWS_REGION", "AWS_DEFAULT_REGION"}
    # boto3 reads AWS_DEFAULT_REGION itself; AWS_REGION is read by the rule (test above)
    assert BOTOCORE_DEFAUT_SESSION_VARIABLES["region"][1] == "AWS_DEFAULT_REGION"
    assert set(region.ENV_VARS) == named


def test_bad_regions_and_profiles_are_clear_errors(profile_env):
    profile_env.setenv("AWS_REGION", "eu-west1")
    with pytest.raises(BincountError, match=r"\$AWS_REGION is 'eu-west1', not an AWS region"):
        region.resolve(None)
    with pytest.raises(BincountError, match="--region is 'Ireland'"):
        region.resolve("Ireland")
    profile_env.delenv("AWS_REGION")
    profile_env.setenv("AWS_PROFILE", "nope")
    with pytest.raises(BincountError, match="AWS_PROFILE"):
        region.resolve(None)


def test_the_four_commands_follow_the_rule(profile_env, tmp_path):
    profile_env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    profile_env.setenv("AWS_REGION", "eu-west-2")
    profile_env.setenv("AWS_ACCESS_KEY_ID", "testing")
    profile_env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert spec.resolve_region(None) == "eu-west-2"
    assert cleanup.client(None).meta.region_name == "eu-west-2"
    assert deploy.endpoint_invoker("x").region == "eu-west-2"
    assert deploy.sagemaker_session(None).boto_region_name == "eu-west-2"
    # the flag (or sagemaker.region for the launcher) first
    assert spec.resolve_region("us-west-2") == "us-west-2"
    assert cleanup.client("us-west-2").meta.region_name == "us-west-2"
    assert deploy.endpoint_invoker("x", "us-west-2").region == "us-west-2"
    # deploy.region of conf/serve.yaml before the environment, for the endpoint commands
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "serve.yaml").write_text("deploy:\n  region: ca-central-1\n")
    profile_env.setenv("BINCOUNT_ROOT", str(tmp_path))
    assert cleanup.client(None).meta.region_name == "ca-central-1"
    assert deploy.endpoint_invoker("x").region == "ca-central-1"
    assert cleanup.client("us-west-2").meta.region_name == "us-west-2"


def test_predict_endpoint_without_credentials_is_one_error(profile_env, abid, tmp_path, capsys):
    photos = sorted((abid / "bin-images").glob("*.jpg"))[:3]
    code = cli.main(
        ["predict", "--endpoint", "bincount-x", *map(str, photos), "--out", str(tmp_path / "p.csv")]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        "error: no AWS credentials to invoke endpoint bincount-x: run `aws configure`, set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    ]
    assert "skipped" not in out and not (tmp_path / "p.csv").exists()
