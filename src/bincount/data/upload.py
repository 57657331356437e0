"""Upload a local dataset to the user's bucket, where SageMaker input channels read it.

Two shapes:
- the folder as it is: `DEST/bin-images/<id>.jpg`, `DEST/metadata/<id>.json` (and its
  `file_list.json`): one channel, a data source like the bucket itself;
- with a manifest (`data/manifests/*.csv`): one prefix per split, `DEST/train/...`,
  `DEST/val/...`, `DEST/test/...`, each in the bucket layout with its own `file_list.json`,
  plus `DEST/manifest.csv`: one channel per split.

Objects already there with the same size and MD5 are skipped, so a re-run uploads only what
changed. Each object is sent with its MD5 (S3 refuses a damaged body) and keeps it in its
metadata, so the comparison also works where the ETag is not the MD5 (KMS-encrypted buckets).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from bincount.data import layout, manifest, s3
from bincount.errors import BincountError

_CONTENT_TYPES = {".jpg": "image/jpeg", ".json": "application/json", ".csv": "text/csv"}
_ID_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(jpg|json)$")


@dataclass(frozen=True)
class Item:
    key: str  # relative to the destination prefix
    path: Path | None = None  # a local file, or:
    data: bytes | None = None  # bytes made here (a split's file_list.json)

    def read(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()


@dataclass
class UploadReport:
    dest: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would upload" if self.dry_run else "uploaded"
        return (
            f"{verb} {len(self.uploaded)} files ({self.bytes / 1e6:.1f} MB) to {self.dest}; "
            f"{len(self.skipped)} unchanged, skipped"
        )


def folder_items(folder: Path) -> list[Item]:
    """The dataset files of a folder in the bucket layout (nothing else: no reports, locks)."""
    items = []
    for sub in (layout.IMAGES, layout.METADATA):
        for path in sorted((folder / sub).iterdir()):
            if _ID_FILE.match(path.name) and path.is_file():
                items.append(Item(f"{sub}/{path.name}", path))
    if (folder / layout.FILE_LIST).is_file():
        items.append(Item(layout.FILE_LIST, folder / layout.FILE_LIST))
    return items


def split_items(folder: Path, manifest_csv: Path) -> list[Item]:
    """One prefix per split of a manifest, each in the bucket layout with its file list.
    A row that names its source (a manifest of several sources) is read from there."""
    rows = manifest.read(Path(manifest_csv))

    def where(r: manifest.Row) -> Path:
        return Path(r.source) if r.source else folder

    absent = [
        r.id
        for r in rows
        if not (
            layout.image_path(where(r), r.id).is_file()
            and layout.metadata_path(where(r), r.id).is_file()
        )
    ]
    if absent:
        raise BincountError(
            f"{len(absent)} images of {manifest_csv} are not in {folder} (e.g. {absent[0]}): "
            "upload from the folder the manifest was built from"
        )
    items = [Item("manifest.csv", Path(manifest_csv))]
    for split in manifest.SPLITS:
        listing: dict[str, list[str]] = {}
        for r in rows:
            if r.split != split:
                continue
            items.append(
                Item(f"{split}/{layout.IMAGES}/{r.id}.jpg", layout.image_path(where(r), r.id))
            )
            meta = layout.metadata_path(where(r), r.id)
            items.append(Item(f"{split}/{layout.METADATA}/{r.id}.json", meta))
            listing.setdefault(str(r.count), []).append(f"{layout.METADATA}/{r.id}.json")
        text = json.dumps({c: listing[c] for c in sorted(listing, key=int)}, indent=1)
        items.append(Item(f"{split}/{layout.FILE_LIST}", data=text.encode()))
    return items


def _existing(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key (relative to prefix) -> (size, ETag without quotes) of the objects under prefix."""
    base = f"{prefix}/" if prefix else ""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(base) :]] = (obj["Size"], obj["ETag"].strip('"'))
    return out


def _unchanged(client, bucket: str, key: str, data: bytes, md5: str, remote) -> bool:
    if remote is None or remote[0] != len(data):
        return False
    if remote[1] == md5:
        return True
    head = client.head_object(Bucket=bucket, Key=key)  # ETag is not the MD5: ask for ours
    return head.get("Metadata", {}).get("md5") == md5


def require_credentials(dest: str) -> None:
    """Refuse a signed upload to `dest` without AWS credentials, before any request."""
    if not s3.has_credentials():
        raise BincountError(
            f"no AWS credentials to upload to {dest}: configure them (aws configure, "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or pass --unsigned for "
            "a bucket open to anonymous writes"
        )


def upload(
    folder: Path,
    dest: str,
    manifest_csv: Path | None = None,
    dry_run: bool = False,
    concurrency: int = 8,
    signed: bool = True,
    echo: Callable[[str], None] = print,
) -> UploadReport:
    """Copy `folder` (or its split manifest) to `dest` (s3://bucket/prefix)."""
    folder = layout.check_folder(Path(folder))
    bucket, prefix = s3.parse_uri(dest)
    items = split_items(folder, manifest_csv) if manifest_csv else folder_items(folder)
    client = s3.client(signed=signed, pool=concurrency, attempts=8)
    report = UploadReport(dest, dry_run=dry_run)
    try:
        remote = _existing(client, bucket, prefix)

        def one(item: Item) -> tuple[str, str, int]:
            data = item.read()
            md5 = hashlib.md5(data).hexdigest()
            key = s3.join(prefix, item.key)
            if _unchanged(client, bucket, key, data, md5, remote.get(item.key)):
                return "skip", item.key, 0
            if not dry_run:
                client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=data,
                    ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(),
                    ContentType=_CONTENT_TYPES.get(Path(item.key).suffix, "binary/octet-stream"),
                    Metadata={"md5": md5},
                )
            return "upload", item.key, len(data)

        bar = tqdm(total=len(items), unit="file", desc="upload", disable=dry_run or None)
        with bar, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for action, key, size in pool.map(one, items):
                bar.update(1)
                if action == "skip":
                    report.skipped.append(key)
                else:
                    report.uploaded.append(key)
                    report.bytes += size
                if dry_run:
                    echo(
                        f"{action:6} s3://{bucket}/{s3.join(prefix, key)}"
                        + (f" ({size} bytes)" if size else "")
                    )
    except BincountError:
        raise
    except Exception as e:
        error = s3.translate(e, dest)
        if isinstance(error, BincountError):
            raise error from None
        raise BincountError(
            f"upload to {dest} failed ({e}): check that the bucket exists and your credentials "
            "may write to it, then run again (what is already there is skipped)"
        ) from None
    return report
