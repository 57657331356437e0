"""Data sources in the bucket's layout: `bin-images/<id>.jpg`, `metadata/<id>.json`.

A source setting is either a local folder or an `s3://bucket[/prefix]` URI. Either way the rest
of the pipeline sees a local folder in that layout: an s3 source is cached locally first.
Ids are strings and stay strings (`00127` and `127` are different images).

`data.source` may also be a list of sources, one dataset over all of them. Each element is a
folder or URI, or a mapping `{path: ..., squashed: true}` for a source whose photos are not the
original bytes but resized copies (e.g. ../shared/abid-224: squashed to 224x224, re-encoded).
A squashed source trains only (never in val or test) and loses to an original copy of an id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bincount.errors import BincountError

IMAGES = "bin-images"
METADATA = "metadata"
FILE_LIST = "file_list.json"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def is_s3_uri(source: str) -> bool:
    return str(source).startswith("s3://")


def check_id(image_id: str) -> str:
    """Refuse ids that could escape the data folder (`../x`, `/etc/passwd`, odd characters)."""
    if not isinstance(image_id, str) or not _SAFE_ID.match(image_id):
        raise BincountError(
            f"invalid image id {image_id!r}: ids are letters, digits, '-' and '_' only "
            "(no paths, dots or spaces); fix the id list"
        )
    return image_id


def image_path(folder: Path, image_id: str) -> Path:
    return folder / IMAGES / f"{check_id(image_id)}.jpg"


def metadata_path(folder: Path, image_id: str) -> Path:
    return folder / METADATA / f"{check_id(image_id)}.json"


@dataclass(frozen=True)
class Source:
    """One element of `data.source`: where (a folder or s3:// URI) and whether its photos are
    squashed copies rather than the original bytes."""

    path: str
    squashed: bool = False


_SOURCE_HINT = (
    "data.source is a folder, an s3:// URI, or a list of them where an element may be a "
    "mapping {path: FOLDER_OR_URI, squashed: true} for resized copies, e.g. "
    "data.source=[../shared/abid,{path:../shared/abid-224,squashed:true}]"
)


def parse_sources(setting) -> list[Source]:
    """The sources of a `data.source` setting (a string, or a list of strings and mappings)."""
    is_list = isinstance(setting, Sequence) and not isinstance(setting, str | bytes)
    items = list(setting) if is_list else [setting]
    if not items:
        raise BincountError(f"data.source is an empty list: {_SOURCE_HINT}")
    out: list[Source] = []
    for item in items:
        if isinstance(item, str | Path):
            path, squashed = str(item), False
        elif isinstance(item, Mapping):
            extra = set(item) - {"path", "squashed"}
            if extra or "path" not in item:
                raise BincountError(
                    f"data.source element {dict(item)!r}: a mapping takes path (required) and "
                    f"squashed only; {_SOURCE_HINT}"
                )
            path, squashed = item["path"], item.get("squashed", False)
            if not isinstance(path, str) or not isinstance(squashed, bool):
                raise BincountError(
                    f"data.source element {dict(item)!r}: path must be a string and squashed "
                    f"true or false; {_SOURCE_HINT}"
                )
        else:
            raise BincountError(f"data.source element {item!r} is not a path: {_SOURCE_HINT}")
        if not path:
            raise BincountError(f"data.source has an empty element: {_SOURCE_HINT}")
        out.append(Source(path, squashed))
    paths = [s.path for s in out]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise BincountError(f"data.source lists {twice[0]} twice: list each source once")
    return out


def resolve_source(source: str, cache_dir: str | Path) -> Path:
    """Turn a `data.source` setting into a local folder in the bucket layout."""
    if not source:
        raise BincountError(
            "data.source is empty: set data.source=PATH (a folder with bin-images/ and "
            "metadata/) or data.source=s3://aft-vbi-pds"
        )
    if is_s3_uri(source):
        from bincount.data import s3  # imported lazily: boto3 is only needed for s3 sources

        return s3.cached_source(source, Path(cache_dir))
    return check_folder(Path(source))


def check_folder(folder: Path) -> Path:
    folder = folder.expanduser()
    hint = (
        "set data.source=PATH to a folder with bin-images/<id>.jpg and metadata/<id>.json "
        "(the bucket's layout), or data.source=s3://aft-vbi-pds"
    )
    if not folder.exists():
        raise BincountError(f"data folder {folder} does not exist: {hint}")
    if not folder.is_dir():
        raise BincountError(f"data source {folder} is not a folder: {hint}")
    missing = [d for d in (IMAGES, METADATA) if not (folder / d).is_dir()]
    if missing:
        raise BincountError(f"data folder {folder} has no {' or '.join(missing)}/ inside: {hint}")
    if not any((folder / METADATA).glob("*.json")):
        raise BincountError(f"data folder {folder} is empty (no metadata/*.json): {hint}")
    return folder.resolve()


def list_ids(folder: Path) -> list[str]:
    """Every id with a metadata file, as strings, sorted."""
    return sorted(p.stem for p in (folder / METADATA).glob("*.json"))


def file_list_ids(path: Path) -> list[str]:
    """Ids of a seed `file_list.json`: {"1": ["data/metadata/100313.json", ...], ...}."""
    try:
        listing = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BincountError(
            f"file list {path} not found: set data.file_list=PATH or data.file_list=null"
        ) from None
    except json.JSONDecodeError as e:
        raise BincountError(
            f"file list {path} is not valid JSON ({e}): fix or replace it"
        ) from None
    return parse_file_list(listing, str(path))


def parse_file_list(listing, where: str) -> list[str]:
    """Ids of a parsed file list: the seed's {"1": ["data/metadata/100313.json", ...], ...},
    or a plain list of ids or metadata paths."""
    if isinstance(listing, dict) and all(isinstance(g, list) for g in listing.values()):
        entries = [e for group in listing.values() for e in group]
    elif isinstance(listing, list):
        entries = listing
    else:
        raise BincountError(
            f"file list {where} must map counts to lists of metadata paths (or be a list of "
            "ids): fix or replace it"
        )
    ids = []
    for entry in entries:
        if not isinstance(entry, str):
            raise BincountError(
                f"file list {where}: entry {entry!r} is not a string (ids are strings: "
                "'00127' and '127' are different images): quote the ids"
            )
        try:
            ids.append(_entry_id(entry))
        except BincountError as e:
            raise BincountError(f"file list {where}: {e}") from None
    return ids


def _entry_id(entry: str) -> str:
    """The id of `00127`, `00127.json` or a relative `.../metadata/00127.json`."""
    parts = entry.split("/")
    if len(parts) > 1 and (entry.startswith("/") or ".." in parts or not entry.endswith(".json")):
        return check_id(entry)  # a path that is not a metadata file: refused with the reason
    return check_id(parts[-1].removesuffix(".json"))
