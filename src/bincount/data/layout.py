"""The bucket's layout: `bin-images/<id>.jpg`, `metadata/<id>.json`, `file_list.json`.

The bottom layer of `bincount.data` (pure helpers: paths, ids, id lists, `is_s3_uri`); it
imports nothing of the package but errors. Ids are strings and stay strings (`00127` and `127`
are different images).
"""

from __future__ import annotations

import json
import re
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


def read_ids(path: Path) -> list[str]:
    """An id list: the seed's JSON ({count: [metadata paths]}), a JSON list, or one id a line."""
    if path.suffix == ".json":
        return file_list_ids(path)
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        raise BincountError(f"file list {path} not found: give an existing --file-list") from None
    return parse_file_list(lines, str(path))


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
