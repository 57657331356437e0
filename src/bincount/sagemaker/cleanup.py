"""Find and delete what this project left running in SageMaker: endpoints (billed by the hour
while they exist), their endpoint configs, and models, by the project tag."""

from __future__ import annotations

from dataclasses import dataclass

from bincount.errors import BincountError
from bincount.sagemaker.tags import PROJECT_TAG_KEY, PROJECT_TAG_VALUE, is_project

# Deleted in this order: an endpoint first (it is what costs), then what it was built from.
KINDS = ("endpoint", "endpoint-config", "model")


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    arn: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<16} {self.name}"


def client(region: str | None = None):
    """SageMaker's client in the region of the project's rule (region.endpoint_region)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from bincount.sagemaker.region import endpoint_region

    region = endpoint_region(region)
    try:
        return boto3.client("sagemaker", region_name=region)
    except BotoCoreError as e:
        raise BincountError(f"cannot talk to SageMaker in {region} ({e})") from None


def _listing(sm, kind: str):
    op, key, name, arn = {
        "endpoint": ("list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
        "endpoint-config": (
            "list_endpoint_configs",
            "EndpointConfigs",
            "EndpointConfigName",
            "EndpointConfigArn",
        ),
        "model": ("list_models", "Models", "ModelName", "ModelArn"),
    }[kind]
    kwargs: dict = {}
    while True:
        page = getattr(sm, op)(**kwargs)
        for item in page.get(key, []):
            yield Resource(kind, item[name], item[arn])
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def _tagged(sm, resource: Resource) -> bool:
    return is_project(sm.list_tags(ResourceArn=resource.arn).get("Tags", []))


def project_resources(sm) -> list[Resource]:
    """Every endpoint, endpoint config and model tagged {bincount:project: bincount}."""
    return [r for kind in KINDS for r in _listing(sm, kind) if _tagged(sm, r)]


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


def delete(sm, resources: list[Resource]) -> list[str]:
    """Delete in dependency order; returns a line per resource (deleted, or already gone)."""
    from botocore.exceptions import ClientError

    calls = {
        "endpoint": lambda n: sm.delete_endpoint(EndpointName=n),
        "endpoint-config": lambda n: sm.delete_endpoint_config(EndpointConfigName=n),
        "model": lambda n: sm.delete_model(ModelName=n),
    }
    lines = []
    for resource in sorted(resources, key=lambda r: KINDS.index(r.kind)):
        try:
            calls[resource.kind](resource.name)
            lines.append(f"deleted {resource}")
        except ClientError as e:
            message = e.response.get("Error", {}).get("Message", str(e))
            if "not found" in message.lower() or "could not find" in message.lower():
                lines.append(f"already gone {resource}")
            else:
                what = f"{resource.kind} {resource.name}"
                raise BincountError(f"could not delete {what}: {message}") from None
    return lines


TAG_TEXT = f"{PROJECT_TAG_KEY}={PROJECT_TAG_VALUE}"
