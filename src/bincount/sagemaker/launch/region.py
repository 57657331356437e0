"""The AWS region of every SageMaker command (launcher, deploy, predict --endpoint, cleanup).

One rule: the region given (`--region`, or the config: `sagemaker.region`, `deploy.region` in
conf/serve.yaml), then $AWS_REGION, then $AWS_DEFAULT_REGION, then the profile's region
(botocore's own resolution: `boto3.Session().region_name`, i.e. $AWS_PROFILE's `region` in
~/.aws/config or $AWS_CONFIG_FILE, as `aws configure` writes it). boto3 itself reads only
AWS_DEFAULT_REGION and the profile; AWS_REGION is read here first, as the AWS CLI v2 and the
other AWS SDKs do. No torch, no AWS call.
"""

from __future__ import annotations

import os
import re

from bincount.errors import BincountError

ENV_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")  # eu-west-1, us-gov-west-1, ap-southeast-5
HOW = (
    "set AWS_REGION or AWS_DEFAULT_REGION (e.g. export AWS_REGION=eu-west-1), or give your AWS "
    "profile a region (`aws configure set region eu-west-1`)"
)


def _check(region: str, source: str) -> str:
    region = region.strip()
    if not _NAME.match(region):
        raise BincountError(f"{source} is {region!r}, not an AWS region name like eu-west-1")
    return region


def resolve(given: str | None, source: str = "--region", ask: str | None = None) -> str:
    """The region to use. `source` names where `given` came from, `ask` how to give one (for
    the error messages)."""
    if given:
        return _check(str(given), source)
    for var in ENV_VARS:
        if os.environ.get(var, "").strip():
            return _check(os.environ[var], f"${var}")
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        region = boto3.Session().region_name
    except BotoCoreError as e:  # e.g. AWS_PROFILE names a profile the config lacks
        raise BincountError(f"cannot read your AWS profile ({e}): check AWS_PROFILE") from None
    if not region:
        raise BincountError(f"no AWS region: pass {ask or source}, or {HOW}")
    return _check(region, "your AWS profile's region")


def endpoint_region(given: str | None = None) -> str:
    """The region of `bincount deploy`, `predict --endpoint` and `cleanup`: --region, then
    deploy.region in conf/serve.yaml, then the environment and the profile."""
    if given:
        return resolve(given, "--region")
    from omegaconf import OmegaConf

    from bincount.config import config_dir

    serve = config_dir() / "serve.yaml"
    configured = None
    if serve.is_file():
        configured = OmegaConf.select(OmegaConf.load(serve), "deploy.region")
    return resolve(configured, "deploy.region in conf/serve.yaml", "--region (or deploy.region)")
