"""Deploy a trained model to a SageMaker endpoint (SDK v3: `sagemaker.core`'s Session).

`package` builds model.tar.gz in the layout of a training job's output (checkpoints/best.ckpt,
config.yaml, metrics.json, calibration.json) plus `code/`: `inference.py` (which re-exports
`bincount.inference`'s four functions), the `bincount` package, conf/serve.yaml (the same
limits as the local server) and requirements.txt, which SageMaker's PyTorch inference
container installs and runs. `deploy` uploads it and creates the model, the endpoint config
(real-time instances, or serverless) and the endpoint, each tagged with the project tag so that
`bincount cleanup` finds them. `invoke_json` queries an endpoint; `delete` removes all three.

No torch here: the archive is built from files, and the SDK is imported only when called.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
import tempfile
import time
from pathlib import Path

from bincount import rundir
from bincount.errors import BincountError
from bincount.sagemaker.launch import region as regions
from bincount.sagemaker.launch.tags import project_tags

log = logging.getLogger(__name__)

RUN_FILES = (rundir.CONFIG, rundir.METRICS, rundir.CALIBRATION)
# What the container installs on top of its PyTorch, pinned as in requirements.txt: what the
# serving modules import that the PyTorch inference DLC lacks (test_endpoint_container.py).
# No Lightning: the endpoint loads a plain CountNet (bincount.inference.loading).
CONTAINER_PACKAGES = (
    "timm",
    "huggingface_hub",
    "omegaconf",
)
SHIM = '''"""SageMaker's entry point: bincount's four functions (packed beside it), in the shape
the PyTorch container's inference toolkit calls them (bincount.sagemaker.container.endpoint)."""
import os

os.environ.setdefault("BINCOUNT_ROOT", os.path.dirname(os.path.abspath(__file__)))

from bincount.sagemaker.container.endpoint import (  # noqa: E402,F401
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
'''
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _package_dir() -> Path:
    """The `bincount` package's folder (what the archive's code/bincount holds)."""
    import bincount

    return Path(bincount.__file__).resolve().parent


def _requirements(root: Path) -> str:
    pins = {}
    req = root / "requirements.txt"
    for line in req.read_text().splitlines() if req.is_file() else []:
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower()] = f"{name}=={version}"
    return "\n".join(pins.get(p, p) for p in CONTAINER_PACKAGES) + "\n"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def package(run: Path, out: Path, root: Path | None = None) -> Path:
    """model.tar.gz from a local run folder (or an extracted training-job output)."""
    from bincount.config import project_root

    root = root or project_root()
    run = Path(run)
    ckpt = rundir.best_checkpoint(run)
    if not ckpt.is_file():
        raise BincountError(
            f"{ckpt} is missing: deploy a run folder of `python train.py` (or the model.tar.gz "
            "of a SageMaker training job)"
        )
    serve_yaml = root / "conf" / "serve.yaml"
    if not serve_yaml.is_file():
        raise BincountError(f"{serve_yaml} is missing: run from the bincount checkout")
    if not rundir.calibration_path(run).is_file():
        log.warning(
            "%s has no calibration.json: the endpoint's verdicts will all be `unsure` "
            "(run `bincount calibrate RUN` before deploying)",
            run,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(ckpt, rundir.BEST_CKPT)
        for name in RUN_FILES:
            if (run / name).is_file():
                tar.add(run / name, name)
        tar.add(
            _package_dir(),
            "code/bincount",
            filter=lambda t: None if "__pycache__" in t.name or t.name.endswith(".pyc") else t,
        )
        tar.add(serve_yaml, "code/conf/serve.yaml")
        _add_bytes(tar, "code/inference.py", SHIM.encode())
        _add_bytes(tar, "code/requirements.txt", _requirements(root).encode())
    os.replace(tmp, out)
    return out


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise BincountError(f"{uri} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise BincountError(f"{uri} has no bucket: use s3://BUCKET/PREFIX")
    return bucket, key


def _aws(call: str, fn, *args, **kwargs):
    """Run an AWS call; its failures become a BincountError naming the call."""
    try:
        return fn(*args, **kwargs)
    except BincountError:
        raise
    except Exception as e:  # botocore ClientError, NoCredentialsError, EndpointConnectionError
        raise BincountError(f"{call} failed ({e}): check AWS credentials, region and names") from e


def _fetch_run(source: str, s3, workdir: Path) -> Path:
    """A local run folder from a run folder, a .ckpt in one, or an s3:// model.tar.gz."""
    if source.startswith("s3://"):
        bucket, key = _split_s3(source)
        archive = workdir / "source.tar.gz"
        _aws(f"downloading {source}", s3.download_file, bucket, key, str(archive))
        extracted = workdir / "source"
        with tarfile.open(archive) as tar:
            tar.extractall(extracted, filter="data")
        return extracted
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        path = rundir.run_folder(path)
    if not path.is_dir():
        raise BincountError(f"{source} is neither a run folder nor an s3:// model.tar.gz")
    return path


def endpoint_name(source: str) -> str:
    base = re.sub(r"[^a-zA-Z0-9-]+", "-", Path(source.rstrip("/")).name.split(".")[0]).strip("-")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"bincount-{base[:30] or 'model'}-{stamp}".replace("--", "-")


def deploy(
    source: str,
    *,
    name: str | None = None,
    s3_prefix: str | None = None,
    settings: dict,
    serverless: bool | None = None,
    instance_type: str | None = None,
    role: str | None = None,
    wait: bool = False,
    region: str | None = None,
    dry_run: bool = False,
) -> dict:
    """Package, upload and create model + endpoint config + endpoint. Returns their names.

    A company account's settings come from `settings` (deploy: in conf/serve.yaml): `subnets`
    and `security_groups` (the model's VpcConfig), `kms_key` (the endpoint config's KmsKeyId,
    and the uploaded archive's encryption), `network_isolation`. `dry_run`: the requests the
    SDK would send, captured in botocore (capture.py), in the result's `requests`."""
    from sagemaker.core import image_uris

    if region:
        region = regions.resolve(region, "--region")
    else:
        where = "deploy.region in conf/serve.yaml"
        region = regions.resolve(settings.get("region"), where, "--region (or deploy.region)")
    role = role or settings.get("role") or os.environ.get("SAGEMAKER_ROLE")
    if not role:
        raise BincountError(
            "no IAM role for the endpoint: pass --role ARN, set $SAGEMAKER_ROLE, or set "
            "deploy.role in conf/serve.yaml"
        )
    serverless = settings["serverless"] if serverless is None else serverless
    instance_type = instance_type or settings["instance_type"]
    name = name or endpoint_name(source)
    if not _NAME.match(name):
        raise BincountError(f"endpoint name {name!r}: use letters, digits and '-' (max 63)")
    if not s3_prefix:
        if not source.startswith("s3://"):
            raise BincountError("a local run needs --s3-prefix s3://BUCKET/PREFIX to upload to")
        s3_prefix = source.rsplit("/", 1)[0]
    bucket, prefix = _split_s3(s3_prefix.rstrip("/"))
    key = f"{prefix}/{name}/model.tar.gz".lstrip("/")

    account = endpoint_account(settings)
    recorder = None
    if dry_run:
        from bincount.sagemaker.launch.capture import Capture

        recorder = Capture(dry_run=True, bucket=bucket)
    sm = sagemaker_session(region, recorder)
    s3 = sm.boto_session.client("s3")
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": account["kms_key"]}
    with tempfile.TemporaryDirectory(prefix="bincount-deploy-") as tmp:
        run = _fetch_run(source, s3, Path(tmp))
        archive = package(run, Path(tmp) / "model.tar.gz")
        _aws(
            f"uploading to s3://{bucket}/{key}",
            s3.upload_file,
            str(archive),
            bucket,
            key,
            ExtraArgs=extra if account["kms_key"] else None,
        )
    model_data = f"s3://{bucket}/{key}"

    image = image_uris.retrieve(
        "pytorch",
        region=region,
        version=str(settings["framework_version"]),
        py_version=settings["py_version"],
        instance_type="ml.m5.large" if serverless else instance_type,
        image_scope="inference",
    )
    tags = project_tags({"bincount:endpoint": name})
    container = {
        "Image": image,
        "ModelDataUrl": model_data,
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "BINCOUNT_BACKEND": "torch",
        },
    }
    variant: dict = {"VariantName": "AllTraffic", "ModelName": name}
    if serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": int(settings["serverless_memory_mb"]),
            "MaxConcurrency": int(settings["serverless_max_concurrency"]),
        }
    else:
        variant["InstanceType"] = instance_type
        variant["InitialInstanceCount"] = int(settings["instance_count"])
    if account["network_isolation"]:
        log.warning(
            "deploy.network_isolation: the inference container installs code/requirements.txt "
            "(%s) from PyPI when it starts, which an isolated container cannot: use an image "
            "that has them",
            ", ".join(CONTAINER_PACKAGES),
        )
    vpc = None
    if account["subnets"]:
        vpc = {"Subnets": account["subnets"], "SecurityGroupIds": account["security_groups"]}
    _aws(
        "CreateModel",
        sm.create_model,
        name,
        role=role,
        primary_container=container,
        tags=tags,
        vpc_config=vpc,
        enable_network_isolation=account["network_isolation"] or None,
    )
    _aws(
        "CreateEndpointConfig",
        sm.create_endpoint_config,
        name,
        [variant],
        tags=tags,
        kms_key=account["kms_key"],
    )
    _aws("CreateEndpoint", sm.create_endpoint, name, name, tags=tags, wait=wait and not dry_run)
    return {
        "requests": {op: params for op, params in recorder.calls} if recorder else None,
        "endpoint": name,
        "model_data": model_data,
        "image": image,
        "serverless": bool(serverless),
        "instance_type": None if serverless else instance_type,
        "region": region,
    }


def endpoint_account(settings: dict) -> dict:
    """deploy.subnets, security_groups, kms_key, network_isolation: checked as the launcher
    checks sagemaker.vpc and kms_key."""
    from omegaconf import OmegaConf

    from bincount.sagemaker.launch.spec import account_settings

    node = OmegaConf.create(
        {
            "vpc": {
                "subnets": list(settings.get("subnets") or []),
                "security_groups": list(settings.get("security_groups") or []),
            },
            "kms_key": settings.get("kms_key"),
            "network_isolation": bool(settings.get("network_isolation", False)),
        }
    )
    try:
        account = account_settings(node, [])
    except BincountError as e:
        raise BincountError(
            str(e).replace("sagemaker.vpc.", "deploy.").replace("sagemaker.", "deploy.")
        ) from None
    return account


def sagemaker_session(region: str | None = None, capture=None):
    """The SDK's session (boto3 underneath: honours $AWS_ENDPOINT_URL and the usual config).
    With a dry-run `capture`, botocore answers every request itself (nothing is sent)."""
    import boto3
    from sagemaker.core.helper.session_helper import Session

    name = regions.endpoint_region(region)
    if capture is not None:
        boto = boto3.session.Session(
            region_name=name, aws_access_key_id="dry-run", aws_secret_access_key="dry-run"
        )
        capture.attach(boto)
    else:
        boto = boto3.session.Session(region_name=name)
    return _aws("opening a SageMaker session", Session, boto)


def endpoint_invoker(name: str, region: str | None = None):
    """`invoke(json_body) -> answer` for an endpoint. Missing credentials, a wrong region or
    endpoint name raise BincountError once, here or at the first call; an image the endpoint
    refuses (its 4xx) comes back as {"error": ...} for that image alone."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=regions.endpoint_region(region))
    try:
        credentials = session.get_credentials()
    except BotoCoreError as e:
        raise BincountError(f"cannot read your AWS credentials ({e})") from None
    if credentials is None:
        raise BincountError(
            f"no AWS credentials to invoke endpoint {name}: run `aws configure`, set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    runtime = session.client("sagemaker-runtime")

    def invoke(body: bytes) -> dict:
        try:
            out = runtime.invoke_endpoint(
                EndpointName=name,
                Body=body,
                ContentType="application/json",
                Accept="application/json",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ModelError":
                raise BincountError(
                    f"invoking endpoint {name} in {session.region_name} failed ({e}): check the "
                    "name (`bincount cleanup` lists this project's endpoints) and the region"
                ) from None
            return {"error": model_error(e.response)}
        except BotoCoreError as e:  # no network, bad endpoint URL, expired credentials
            raise BincountError(f"invoking endpoint {name} failed ({e})") from None
        raw = out["Body"].read()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BincountError(
                f"endpoint {name} answered something that is not JSON: {raw[:200]!r}"
            ) from None

    invoke.region = session.region_name
    return invoke


def model_error(response: dict) -> str:
    """The endpoint's refusal in one line: its status and the first line of its message (the
    inference toolkit appends a traceback to every error body)."""
    status = response.get("OriginalStatusCode", "?")
    message = str(response.get("OriginalMessage") or response.get("Error", {}).get("Message"))
    first = (message.strip().splitlines() or ["(no message)"])[0]
    return f"the endpoint answered {status}: {first[:500]}"


def invoke_json(name: str, body: bytes, region: str | None = None) -> dict:
    """POST a JSON body to an endpoint; its JSON answer, or {"error": ...} if it refused it."""
    return endpoint_invoker(name, region)(body)


def delete(name: str, region: str | None = None) -> list[str]:
    """Delete the endpoint, its config and its model (those that exist); what was deleted."""
    sm = sagemaker_session(region)
    client = sm.sagemaker_client
    deleted = []
    for kind, describe, remove, key in (
        ("endpoint", client.describe_endpoint, sm.delete_endpoint, "EndpointName"),
        (
            "endpoint-config",
            client.describe_endpoint_config,
            sm.delete_endpoint_config,
            "EndpointConfigName",
        ),
        ("model", client.describe_model, sm.delete_model, "ModelName"),
    ):
        try:
            describe(**{key: name})
        except client.exceptions.ClientError:  # not there (never created, or deleted)
            continue
        _aws(f"deleting {kind} {name}", remove, name)
        deleted.append(f"{kind}/{name}")
    return deleted
