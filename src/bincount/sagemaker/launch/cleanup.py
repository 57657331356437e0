"""Find, stop and delete what this project made in AWS, by the project tag (tags.py).

- endpoints (billed by the hour while they exist), their endpoint configs, and models;
- running training and tuning jobs (stopped: SageMaker keeps a job's record, never deletes it);
- the S3 prefixes those tagged jobs wrote or read from the project: the source bundle (the
  `code` and `sm_drivers` channels, a tuning job's `sagemaker_submit_directory`), the outputs
  (`<S3OutputPath>/<job name>/`) and the checkpoints (CheckpointConfig.S3Uri), when the newest
  object under the prefix is older than a given age. The data channel is never touched.
S3 objects carry no project tag: a prefix is the project's because a tagged job names it, so an
object of anyone else in the same bucket is never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bincount.errors import BincountError
from bincount.sagemaker.launch.tags import PROJECT_TAG_KEY, PROJECT_TAG_VALUE, is_project

# Stopped or deleted in this order: what runs and what costs first, then what it was built from.
KINDS = ("tuning-job", "training-job", "endpoint", "endpoint-config", "model", "s3-prefix")
ENDPOINT_KINDS = ("endpoint", "endpoint-config", "model")
JOB_KINDS = ("tuning-job", "training-job")
BUNDLE_CHANNELS = ("code", "sm_drivers")  # what ModelTrainer uploads from the source bundle
RUNNING = ("InProgress", "Stopping")


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    arn: str = ""
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<16} {self.name}" + (f"  ({self.detail})" if self.detail else "")


def client(region: str | None = None, service: str = "sagemaker"):
    """A client in the region of the project's rule (region.endpoint_region)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from bincount.sagemaker.launch.region import endpoint_region

    region = endpoint_region(region)
    try:
        return boto3.client(service, region_name=region)
    except BotoCoreError as e:
        raise BincountError(f"cannot talk to {service} in {region} ({e})") from None


_LISTINGS = {
    "endpoint": ("list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
    "endpoint-config": (
        "list_endpoint_configs",
        "EndpointConfigs",
        "EndpointConfigName",
        "EndpointConfigArn",
    ),
    "model": ("list_models", "Models", "ModelName", "ModelArn"),
    "training-job": (
        "list_training_jobs",
        "TrainingJobSummaries",
        "TrainingJobName",
        "TrainingJobArn",
    ),
    "tuning-job": (
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobArn",
    ),
}
_STATUS = {"training-job": "TrainingJobStatus", "tuning-job": "HyperParameterTuningJobStatus"}


def _listing(sm, kind: str, **filters):
    op, key, name, arn = _LISTINGS[kind]
    kwargs: dict = dict(filters)
    while True:
        page = getattr(sm, op)(**kwargs)
        for item in page.get(key, []):
            yield Resource(kind, item[name], item[arn], item.get(_STATUS.get(kind, ""), ""))
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def _tagged(sm, resource: Resource) -> bool:
    return is_project(sm.list_tags(ResourceArn=resource.arn).get("Tags", []))


def project_resources(sm) -> list[Resource]:
    """Every endpoint, endpoint config and model tagged {bincount:project: bincount}."""
    return [r for kind in ENDPOINT_KINDS for r in _listing(sm, kind) if _tagged(sm, r)]


def tagged_jobs(sm) -> list[Resource]:
    """Every training and tuning job of the project, any status (detail: the status)."""
    return [r for kind in JOB_KINDS for r in _listing(sm, kind) if _tagged(sm, r)]


def running(jobs: list[Resource]) -> list[Resource]:
    return [j for j in jobs if j.detail == "InProgress"]


def _prefixes_of_training_job(job: dict) -> list[str]:
    out = [
        c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in job.get("InputDataConfig", [])
        if c["ChannelName"] in BUNDLE_CHANNELS and "S3DataSource" in c.get("DataSource", {})
    ]
    output = job.get("OutputDataConfig", {}).get("S3OutputPath")
    if output:
        out.append(f"{output.rstrip('/')}/{job['TrainingJobName']}")
    checkpoints = (job.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoints:
        out.append(checkpoints)
    return out


def _prefixes_of_tuning_job(job: dict) -> list[str]:
    definition = job.get("TrainingJobDefinition") or {}
    out = [
        c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in definition.get("InputDataConfig", [])
        if c["ChannelName"] in BUNDLE_CHANNELS and "S3DataSource" in c.get("DataSource", {})
    ]
    submitted = (definition.get("StaticHyperParameters") or {}).get("sagemaker_submit_directory")
    if submitted:
        out.append(submitted.strip('"'))
    checkpoints = (definition.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoints:
        out.append(checkpoints)
    return out  # the trials' outputs: the trials are training jobs with the same tags


def job_prefixes(sm, jobs: list[Resource]) -> list[str]:
    """The S3 prefixes (s3://bucket/key, no trailing slash) the tagged jobs name."""
    found: list[str] = []
    for job in jobs:
        if job.kind == "training-job":
            found += _prefixes_of_training_job(sm.describe_training_job(TrainingJobName=job.name))
        else:
            described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job.name)
            found += _prefixes_of_tuning_job(described)
    uris = sorted({u.rstrip("/") for u in found if u.startswith("s3://")})
    uris = [u for u in uris if u.removeprefix("s3://").partition("/")[2]]  # never a whole bucket
    # a prefix inside another one is covered by it
    return [u for u in uris if not any(u.startswith(o + "/") for o in uris if o != u)]


def _objects(s3, uri: str):
    """The object `uri` names (a tarball) or those of the folder under it, never a sibling
    that only starts alike (`output/job-1` is not `output/job-10`)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for obj in page.get("Contents", []):
            if obj["Key"] == key or obj["Key"].startswith(key + "/"):
                yield bucket, obj


def s3_prefixes(s3, uris: list[str], older_than: timedelta, now: datetime | None = None):
    """(to delete, kept as too recent): a Resource per prefix that holds objects."""
    now = now or datetime.now(UTC)
    old, recent = [], []
    for uri in uris:
        objects = {o["Key"]: o for _, o in _objects(s3, uri)}
        if not objects:
            continue
        newest = max(o["LastModified"] for o in objects.values())
        size = sum(o.get("Size", 0) for o in objects.values())
        detail = f"{len(objects)} objects, {size / 1e6:.1f} MB, newest {newest:%Y-%m-%d %H:%M}"
        (old if now - newest >= older_than else recent).append(
            Resource("s3-prefix", uri + "/", "", detail)
        )
    return old, recent


def endpoint_resources(sm, endpoint: str) -> tuple[list[Resource], list[Resource]]:
    """An endpoint, its config and its models: (to delete, kept: models of other projects)."""
    from botocore.exceptions import ClientError

    try:
        ep = sm.describe_endpoint(EndpointName=endpoint)
    except ClientError:
        raise BincountError(
            f"no endpoint {endpoint!r} in this region: `bincount cleanup` lists this project's"
        ) from None
    found = [Resource("endpoint", endpoint, ep["EndpointArn"])]
    kept: list[Resource] = []
    try:
        conf = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    except ClientError:
        return found, kept  # its config is already gone
    found.append(Resource("endpoint-config", conf["EndpointConfigName"], conf["EndpointConfigArn"]))
    for variant in conf.get("ProductionVariants", []):
        try:
            model = sm.describe_model(ModelName=variant["ModelName"])
        except ClientError:
            continue
        resource = Resource("model", model["ModelName"], model["ModelArn"])
        (found if _tagged(sm, resource) else kept).append(resource)
    return found, kept


def _delete_prefix(s3, uri: str) -> int:
    keys: dict[str, list[dict]] = {}
    for bucket, obj in _objects(s3, uri.rstrip("/")):
        keys.setdefault(bucket, []).append({"Key": obj["Key"]})
    for bucket, objects in keys.items():
        for i in range(0, len(objects), 1000):
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[i : i + 1000]})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise BincountError(
                    f"could not delete s3://{bucket}/{first['Key']}: {first.get('Message')} "
                    "(the role needs s3:DeleteObject there)"
                )
    return sum(len(v) for v in keys.values())


def delete(sm, resources: list[Resource], s3=None) -> list[str]:
    """Stop jobs, delete endpoints/configs/models, then S3 prefixes; a line per resource."""
    from botocore.exceptions import ClientError

    calls = {
        "tuning-job": lambda n: sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=n),
        "training-job": lambda n: sm.stop_training_job(TrainingJobName=n),
        "endpoint": lambda n: sm.delete_endpoint(EndpointName=n),
        "endpoint-config": lambda n: sm.delete_endpoint_config(EndpointConfigName=n),
        "model": lambda n: sm.delete_model(ModelName=n),
    }
    lines = []
    for resource in sorted(resources, key=lambda r: KINDS.index(r.kind)):
        bare = Resource(resource.kind, resource.name)
        if resource.kind == "s3-prefix":
            lines.append(f"deleted {bare}  ({_delete_prefix(s3, resource.name)} objects)")
            continue
        try:
            calls[resource.kind](resource.name)
            verb = "stopped" if resource.kind in JOB_KINDS else "deleted"
            lines.append(f"{verb} {bare}")
        except ClientError as e:
            message = e.response.get("Error", {}).get("Message", str(e))
            if "not found" in message.lower() or "could not find" in message.lower():
                lines.append(f"already gone {bare}")
            elif resource.kind in JOB_KINDS and "status" in message.lower():
                lines.append(f"already ended {bare}")
            else:
                what = f"{resource.kind} {resource.name}"
                raise BincountError(f"could not stop or delete {what}: {message}") from None
    return lines


TAG_TEXT = f"{PROJECT_TAG_KEY}={PROJECT_TAG_VALUE}"
