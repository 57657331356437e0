"""The manifest: (id, count, split) for every usable image of a source, built once and reused.

Building it reads every metadata file, decodes every image once (at reduced size) to catch
corrupt or truncated JPEGs, and makes a stratified split that depends only on the seed. The
result is written beside the data cache under a name derived from the settings, so every run
and every sweep trial with the same settings reads the same split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bincount.data import sources
from bincount.errors import BincountError
from bincount.fileio import atomic_write_text

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Row:
    id: str
    count: int
    split: str


def read_count(path: Path) -> int:
    """EXPECTED_QUANTITY of a metadata file; BincountError says what is wrong with it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BincountError(f"{path}: metadata file missing") from None
    return parse_count(data, path)


def parse_count(data: bytes, path: Path | str) -> int:
    """EXPECTED_QUANTITY of metadata bytes (read from `path`, named in errors)."""
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BincountError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or "EXPECTED_QUANTITY" not in meta:
        raise BincountError(f"{path}: metadata has no EXPECTED_QUANTITY")
    value = meta["EXPECTED_QUANTITY"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BincountError(f"{path}: EXPECTED_QUANTITY is {value!r}, not a count")
    return value


def verify_jpeg(data: bytes) -> None:
    """Decode the whole image (at 1/8 scale, which still reads every byte); raise if broken."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise BincountError(f"not a JPEG but {im.format}")
            im.draft("RGB", (im.width // 8 or 1, im.height // 8 or 1))
            im.load()
    except BincountError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise BincountError(f"image does not decode ({e})") from None


def _check(folder: Path, image_id: str) -> tuple[str, int | None, str | None]:
    """(id, count, None) for a usable image, (id, None, reason) for one to skip."""
    try:
        count = read_count(sources.metadata_path(folder, image_id))
        path = sources.image_path(folder, image_id)
        if not path.is_file():
            return image_id, None, f"{path}: image missing"
        try:
            verify_jpeg(path.read_bytes())
        except BincountError as e:
            return image_id, None, f"{path}: {e}"
        return image_id, count, None
    except BincountError as e:
        return image_id, None, str(e)


def stratified_split(
    labelled: dict[str, int], fractions: tuple[float, float, float], seed: int
) -> list[Row]:
    """Split each count's ids by the fractions (train, val, test), the same for the same seed."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise BincountError(
            f"data.split={list(fractions)} must be three fractions (train, val, test) summing to 1"
        )
    by_count: dict[int, list[str]] = defaultdict(list)
    for image_id, count in labelled.items():
        by_count[count].append(image_id)
    rows = []
    for count in sorted(by_count):
        ids = sorted(by_count[count])
        random.Random(f"{seed}-{count}").shuffle(ids)
        n_val = round(len(ids) * fractions[1])
        n_test = round(len(ids) * fractions[2])
        n_train = len(ids) - n_val - n_test
        for i, image_id in enumerate(ids):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            rows.append(Row(image_id, count, split))
    return sorted(rows, key=lambda r: (SPLITS.index(r.split), r.id))


def build(
    folder: Path,
    counts: list[int],
    fractions: tuple[float, float, float],
    seed: int,
    ids: list[str] | None = None,
    workers: int = 4,
) -> tuple[list[Row], list[tuple[str, str]]]:
    """Rows of the manifest, and (id, reason) for every image that was skipped."""
    wanted = sources.list_ids(folder) if ids is None else list(dict.fromkeys(ids))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda i: _check(folder, i), wanted))
    labelled, skipped = {}, []
    for image_id, count, reason in results:
        if reason is not None:
            skipped.append((image_id, reason))
        elif count in counts:
            labelled[image_id] = count
    if not labelled:
        raise BincountError(
            f"no usable images in {folder} with counts {counts} "
            f"({len(wanted)} ids listed, {len(skipped)} skipped): check data.source, "
            "data.counts and data.file_list"
        )
    return stratified_split(labelled, fractions, seed), skipped


def manifest_path(cache_dir: Path, folder: Path, spec: dict) -> Path:
    key = hashlib.sha1(json.dumps({"source": str(folder), **spec}, sort_keys=True).encode())
    return Path(cache_dir) / "manifests" / f"{folder.name}-{key.hexdigest()[:12]}.csv"


def write(path: Path, rows: list[Row]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "count", "split"])
    writer.writerows((r.id, r.count, r.split) for r in rows)
    atomic_write_text(path, buf.getvalue())


def read(path: Path) -> list[Row]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["id", "count", "split"]:
            raise BincountError(f"{path} is not a bincount manifest: delete it to rebuild it")
        return [Row(r["id"], int(r["count"]), r["split"]) for r in reader]


def load_or_build(
    folder: Path,
    cache_dir: Path,
    counts: list[int],
    fractions: tuple[float, float, float],
    seed: int,
    file_list: Path | None = None,
) -> tuple[Path, list[Row]]:
    """The manifest for these settings: read if already built, else built and written."""
    spec = {
        "counts": sorted(counts),
        "split": list(fractions),
        "seed": seed,
        "file_list": str(file_list) if file_list else None,
    }
    path = manifest_path(cache_dir, folder, spec)
    if path.exists():
        return path, read(path)
    ids = sources.file_list_ids(file_list) if file_list else None
    rows, skipped = build(folder, sorted(counts), tuple(fractions), seed, ids)
    if skipped:
        report = "\n".join(f"{i}\t{reason}" for i, reason in skipped)
        atomic_write_text(path.with_suffix(".skipped.tsv"), "id\treason\n" + report + "\n")
        shown = "\n  ".join(reason for _, reason in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning(
            "skipped %d of the listed images (full list in %s):\n  %s%s",
            len(skipped),
            path.with_suffix(".skipped.tsv"),
            shown,
            more,
        )
    write(path, rows)
    sizes = Counter(r.split for r in rows)
    log.info("manifest %s: %s", path, ", ".join(f"{s} {sizes[s]}" for s in SPLITS))
    return path, rows
