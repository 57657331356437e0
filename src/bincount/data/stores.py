"""Where a dataset is read from: a local folder or an S3 prefix, both in the bucket's layout.

A store hands out the bytes of a key (`metadata/<id>.json`, `bin-images/<id>.jpg`) and lists
ids. Fetch reads every source through this one interface, so a folder and a bucket take the
same code path (`sources.open_store` picks the store of a source). A store says what went
wrong with a key by the exception it raises:
`Missing` (no such key: reported, not retried), `Transient` (throttling, 5xx, a dropped
connection, a short or damaged body: retried) or `BincountError` (the user must act).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from bincount.data import layout
from bincount.errors import BincountError

_METADATA_KEY = re.compile(r"^(?P<id>[^/]+)\.json$")


class Missing(Exception):
    """The key does not exist in the store (or the store refuses to say)."""


class Transient(Exception):
    """A failure that may go away if the request is made again."""


class Store(Protocol):
    description: str

    def get(self, key: str) -> bytes: ...

    def metadata_ids(self, refused: list[str]) -> Iterator[str]: ...


def ids_from_names(names: Iterator[str], refused: list[str]) -> Iterator[str]:
    """Ids of metadata file names (`<id>.json`), in order; names with unsafe ids go to refused."""
    for name in names:
        match = _METADATA_KEY.match(name)
        if not match:
            continue  # not a metadata file (a folder marker, a README...)
        try:
            yield layout.check_id(match["id"])
        except BincountError:
            refused.append(name)


class LocalStore:
    """A folder in the bucket layout (e.g. ../shared/abid)."""

    def __init__(self, folder: Path):
        self.folder = layout.check_folder(Path(folder))
        self.description = str(self.folder)

    def get(self, key: str) -> bytes:
        try:
            return (self.folder / key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise Missing(key) from None

    def metadata_ids(self, refused: list[str]) -> Iterator[str]:
        names = sorted(p.name for p in (self.folder / layout.METADATA).iterdir())
        return ids_from_names(iter(names), refused)
