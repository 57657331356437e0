"""The tag on everything this project creates in SageMaker (jobs, models, endpoints, configs).

`bincount cleanup` finds what to delete by it; deploy code uses the same constant.
"""

from __future__ import annotations

from collections.abc import Mapping

PROJECT_TAG_KEY = "bincount:project"
PROJECT_TAG_VALUE = "bincount"


def project_tags(extra: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """[{"Key": ..., "Value": ...}] with the project tag first, then `extra` (str values)."""
    tags = {PROJECT_TAG_KEY: PROJECT_TAG_VALUE}
    for key, value in (extra or {}).items():
        if str(key) == PROJECT_TAG_KEY:
            continue  # the project tag is not the user's to change: cleanup relies on it
        tags[str(key)] = str(value)
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def is_project(tags: list[dict[str, str]]) -> bool:
    wanted = (PROJECT_TAG_KEY, PROJECT_TAG_VALUE)
    return any((t.get("Key"), t.get("Value")) == wanted for t in tags)
