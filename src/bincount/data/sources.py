"""Data sources: resolving a `data.source` setting into local folders in the bucket's layout.

The top layer of `bincount.data`'s reading side (layout <- stores <- retry <- s3 <- fetch <-
sources). A source setting is either a local folder or an `s3://bucket[/prefix]` URI. Either
way the rest of the pipeline sees a local folder in that layout: an s3 source is cached locally
first (fetched once, see `cached_source`).

`data.source` may also be a list of sources, one dataset over all of them. Each element is a
folder or URI, or a mapping `{path: ..., original: false}` for a source whose photos are not the
original bytes but resized copies (e.g. ../shared/abid-256: resized to 256 px, aspect ratio
kept, re-encoded). Such copies train only (never in val or test) and lose to an original copy
of an id. `squashed: true` (abid-224: squashed to 224x224) is the older name: it means
`original: false` and records that the copies are stretched; nothing else differs today.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bincount.data import fetch, layout, s3
from bincount.data.retry import with_retries
from bincount.data.stores import LocalStore, Missing, Store
from bincount.errors import BincountError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One element of `data.source`: where (a folder or s3:// URI), whether its photos are the
    original bytes (False: resized copies, training only) and whether the copies are squashed
    (stretched to a square; `squashed=True` implies `original=False`)."""

    path: str
    original: bool = True
    squashed: bool = False

    def __post_init__(self):
        if self.squashed and self.original:
            object.__setattr__(self, "original", False)


KEYS = ("path", "original", "squashed")
_SOURCE_HINT = (
    "data.source is a folder, an s3:// URI, or a list of them where an element may be a "
    "mapping {path: FOLDER_OR_URI, original: false} for resized copies (training only), e.g. "
    "data.source=[../shared/abid,{path:../shared/abid-256,original:false}]"
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
            source = Source(str(item))
        elif isinstance(item, Mapping):
            source = _from_mapping(item)
        else:
            raise BincountError(f"data.source element {item!r} is not a path: {_SOURCE_HINT}")
        if not source.path:
            raise BincountError(f"data.source has an empty element: {_SOURCE_HINT}")
        out.append(source)
    paths = [s.path for s in out]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise BincountError(f"data.source lists {twice[0]} twice: list each source once")
    return out


def _from_mapping(item: Mapping) -> Source:
    """`{path: ..., original: false}` (or the older `{path: ..., squashed: true}`)."""
    extra = set(item) - set(KEYS)
    if extra or "path" not in item:
        raise BincountError(
            f"data.source element {dict(item)!r}: a mapping takes path (required), original "
            f"and squashed only; {_SOURCE_HINT}"
        )
    path = item["path"]
    original, squashed = item.get("original", True), item.get("squashed", False)
    if (
        not isinstance(path, str)
        or not isinstance(original, bool)
        or not isinstance(squashed, bool)
    ):
        raise BincountError(
            f"data.source element {dict(item)!r}: path must be a string, original and squashed "
            f"true or false; {_SOURCE_HINT}"
        )
    if squashed and item.get("original") is True:
        raise BincountError(
            f"data.source element {dict(item)!r}: squashed copies are not the original bytes: "
            "drop original: true (squashed: true means original: false)"
        )
    return Source(path, original and not squashed, squashed)


def resolve_source(source: str, cache_dir: str | Path) -> Path:
    """Turn a `data.source` setting into a local folder in the bucket layout."""
    if not source:
        raise BincountError(
            "data.source is empty: set data.source=PATH (a folder with bin-images/ and "
            "metadata/) or data.source=s3://aft-vbi-pds"
        )
    if layout.is_s3_uri(source):
        return cached_source(source, Path(cache_dir))
    return layout.check_folder(Path(source))


def open_store(source: str, signed: bool | None = None, connections: int = 16) -> Store:
    """A store for an `s3://bucket[/prefix]` URI or a local folder (`connections`: the most
    requests at once, for the client's connection pool)."""
    if layout.is_s3_uri(source):
        return s3.S3Store(source, signed=signed, pool=connections)
    return LocalStore(Path(source))


def seed_ids() -> list[str]:
    """The seed project's ids (10,441 of counts 1..5), from the list shipped in the package."""
    return layout.parse_file_list(json.loads(s3.seed_file_list()), "the seed's file_list.json")


def cached_source(uri: str, cache_dir: Path, signed: bool | None = None) -> Path:
    """A local folder in the bucket layout holding an s3 source, fetched on first use.

    The ids are the bucket's own `file_list.json` when it has one (as `bincount data upload`
    writes), else the seed's list shipped in the package. A finished fetch is recorded in the
    folder, so later runs use the cache without any request; an interrupted one resumes.
    """
    uri = s3.canonical(uri)
    folder = s3.cache_folder(uri, cache_dir)
    if fetch.finished(folder, uri):
        return folder
    store = s3.S3Store(uri, signed=signed)
    try:
        listing = with_retries(lambda: store.get(layout.FILE_LIST))
        where = store.uri(layout.FILE_LIST)
    except Missing:
        listing, where = s3.seed_file_list(), "the seed's file_list.json"
    try:
        ids = layout.parse_file_list(json.loads(listing), where)
    except ValueError as e:
        raise BincountError(f"{where} is not valid JSON ({e}): fix or remove it") from None
    log.info("data source %s: fetching %d listed images into %s (once)", uri, len(ids), folder)
    report = fetch.fetch(store, folder, ids, wait_for_lock=True)
    log.info("%s", report.summary())
    if report.failed:
        raise BincountError(
            f"{len(report.failed)} files of {uri} could not be fetched into {folder} (first: "
            f"{report.failed[0][0]}: {report.failed[0][1]}): run again to resume"
        )
    if not report.complete:
        raise BincountError(
            f"none of the {len(ids)} listed images could be fetched from {uri} (e.g. "
            f"{(report.missing or ['?'])[0]} is missing): check data.source"
        )
    return folder
