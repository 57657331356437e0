"""The manifest: (id, count, split, source) for every usable image of the sources, built once.

Building it reads every metadata file, decodes every image once (at reduced size) to catch
corrupt or truncated JPEGs, and gives each photo a split by a stable hash of its id and the seed
(`split_of`): adding or removing photos never moves another photo between splits. The result is
written beside the data cache under a name derived from the sources and the settings, with a
record of what the sources held (`<name>.sources.json`: per source, how many files and a hash of
their names, sizes and mtimes). A run whose sources no longer match that record rebuilds the
manifest and logs why; one whose sources are unchanged reads it.

Several sources make one manifest. An id held by several is kept once: from an original source
before a source of copies (resized, re-encoded: `{path: ..., original: false}` in `data.source`,
or the older `squashed: true`), else from the first listed. Photos of a source of copies are
training photos only: validation and test are original photos.

The build log counts what it cannot use and what is thin: photos without a metadata file (one
line), and photos whose metadata is a stub without products (`BIN_FCSKU_DATA`; e.g.
../shared/abid-256's): those train, but carry no order lines and no product-derived targets.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bincount.data import layout
from bincount.errors import BincountError
from bincount.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


FORMAT = 2
COLUMNS = ["id", "count", "split", "source"]


@dataclass(frozen=True)
class Row:
    id: str
    count: int
    split: str
    source: str = ""  # the folder the photo is read from ("" in manifests of one folder, v1)


@dataclass(frozen=True)
class Located:
    """A source as the manifest sees it: a local folder in the bucket layout, and whether its
    photos are the original bytes (False: copies, training only; `squashed` implies False)."""

    folder: Path
    original: bool = True
    squashed: bool = False

    def __post_init__(self):
        if self.squashed and self.original:
            object.__setattr__(self, "original", False)

    @property
    def copies(self) -> bool:
        """Not the original bytes: trains only, loses to an original of the same id."""
        return not self.original


def _located(where) -> list[Located]:
    """A folder, a Located, or a list of either."""
    items = where if isinstance(where, list | tuple) else [where]
    return [w if isinstance(w, Located) else Located(Path(w)) for w in items]


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


def has_products(data: bytes) -> bool:
    """Whether metadata bytes list products (a non-empty BIN_FCSKU_DATA); stubs do not."""
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    products = meta.get("BIN_FCSKU_DATA") if isinstance(meta, dict) else None
    return isinstance(products, dict) and bool(products)


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


def _check(folder: Path, image_id: str) -> tuple[str, int | None, str | None, bool]:
    """(id, count, None, has products) for a usable image, (id, None, reason, False) for one to
    skip."""
    meta = layout.metadata_path(folder, image_id)
    try:
        try:
            data = meta.read_bytes()
        except FileNotFoundError:
            raise BincountError(f"{meta}: metadata file missing") from None
        count = parse_count(data, meta)
        path = layout.image_path(folder, image_id)
        if not path.is_file():
            return image_id, None, f"{path}: image missing", False
        try:
            verify_jpeg(path.read_bytes())
        except BincountError as e:
            return image_id, None, f"{path}: {e}", False
        return image_id, count, None, has_products(data)
    except BincountError as e:
        return image_id, None, str(e), False


def photos_without_metadata(folder: Path) -> list[str]:
    """Ids of `bin-images/*.jpg` in `folder` that have no `metadata/<id>.json` (never used)."""
    with os.scandir(folder / layout.METADATA) as it:
        labelled = {e.name.removesuffix(".json") for e in it if e.name.endswith(".json")}
    with os.scandir(folder / layout.IMAGES) as it:
        photos = {e.name.removesuffix(".jpg") for e in it if e.name.endswith(".jpg")}
    return sorted(photos - labelled)


def _check_fractions(fractions) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise BincountError(
            f"data.split={list(fractions)} must be three fractions (train, val, test) summing to 1"
        )
    return tuple(float(f) for f in fractions)


def split_of(image_id: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """The split of one photo: sha256("seed:id") as a number in [0, 1) against the fractions.

    It depends on nothing but the id and the seed, so adding photos moves no other photo. Each
    count is split by the fractions only approximately (binomially: about +-sqrt(n f (1-f)))."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


def assign_splits(
    labelled: dict[str, int],
    fractions: tuple[float, float, float],
    seed: int,
    origin: dict[str, str] | None = None,
    train_only: set[str] | frozenset[str] = frozenset(),
) -> list[Row]:
    """Rows for {id: count}: each id's split by `split_of` (ids in `train_only`: train), its
    source from `origin`."""
    fractions = _check_fractions(fractions)
    origin = origin or {}
    rows = [
        Row(i, c, "train" if i in train_only else split_of(i, seed, fractions), origin.get(i, ""))
        for i, c in labelled.items()
    ]
    return sorted(rows, key=lambda r: (SPLITS.index(r.split), r.id))


# The name reports/describe.py knows (the split was stratified per count before FORMAT 2).
stratified_split = assign_splits


def build(
    where,
    counts: list[int],
    fractions: tuple[float, float, float],
    seed: int,
    ids: list[str] | None = None,
    workers: int = 4,
) -> tuple[list[Row], list[tuple[str, str]]]:
    """Rows of the manifest of `where` (a folder, or a list of folders or `Located`), and
    (id, reason) for every image that was skipped."""
    located = _located(where)
    # Originals first, then copies; in list order within each.
    ranked = sorted(located, key=lambda s: s.copies)
    wanted = None if ids is None else list(dict.fromkeys(ids))
    jobs = []
    for src in ranked:
        present = layout.list_ids(src.folder)
        if wanted is not None:
            have = set(present)
            present = [i for i in wanted if i in have] if len(ranked) > 1 else wanted
        jobs += [(src, i) for i in present]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: (j[0], *_check(j[0].folder, j[1])), jobs))
    chosen: dict[str, tuple[Located, int]] = {}
    broken: dict[str, list[str]] = defaultdict(list)
    duplicates = []
    stubs: set[str] = set()
    for src, image_id, count, reason, products in results:
        if reason is not None:
            broken[image_id].append(reason)
        elif image_id in chosen:
            duplicates.append((image_id, chosen[image_id][0].folder, src.folder))
        else:
            chosen[image_id] = (src, count)
            if not products:
                stubs.add(image_id)
    _log_thin(ranked, {i for i, (_, c) in chosen.items() if c in counts} & stubs)
    skipped = [
        (i, r if i not in chosen else f"{r} (read from {chosen[i][0].folder} instead)")
        for i, reasons in broken.items()
        for r in reasons
    ]
    if wanted is not None and len(ranked) > 1:
        listed = {i for _, i in jobs}
        skipped += [(i, f"{i}: in none of the sources") for i in wanted if i not in listed]
    if duplicates:
        i, kept, dropped = duplicates[0]
        log.info(
            "%d ids are in several sources; each kept once, original bytes first (e.g. %s "
            "from %s, not %s)",
            len(duplicates),
            i,
            kept,
            dropped,
        )
    labelled = {i: c for i, (_, c) in chosen.items() if c in counts}
    if not labelled:
        listed = len(wanted) if wanted is not None else len(jobs)
        raise BincountError(
            f"no usable images in {', '.join(str(s.folder) for s in located)} with counts "
            f"{counts} ({listed} ids listed, {len(skipped)} skipped): check data.source, "
            "data.counts and data.file_list"
        )
    origin = {i: str(s.folder) for i, (s, _) in chosen.items()}
    train_only = {i for i, (s, _) in chosen.items() if s.copies}
    return assign_splits(labelled, fractions, seed, origin, train_only), skipped


def _log_thin(located: list[Located], stubs: set[str]) -> None:
    """One line for the photos without a metadata file, one for the stub metadata kept."""
    orphans = {s.folder: photos_without_metadata(s.folder) for s in located}
    n = sum(map(len, orphans.values()))
    if n:
        folder, ids = next((f, i) for f, i in orphans.items() if i)
        log.warning(
            "photos without a metadata file (no count): %d, not used (e.g. %s in %s); fetch "
            "their metadata/<id>.json to use them",
            n,
            ids[0],
            folder / layout.IMAGES,
        )
    if stubs:
        log.info(
            "photos with stub metadata, without products (no BIN_FCSKU_DATA, e.g. %s): %d, "
            "trained on, left out of order streams and product-derived targets",
            min(stubs),
            len(stubs),
        )


def fingerprint(folder: Path) -> dict:
    """What a folder holds: how many files, and a hash of their names, sizes and mtimes."""
    h = hashlib.sha1()
    n = 0
    for sub in (layout.METADATA, layout.IMAGES):
        with os.scandir(folder / sub) as it:
            entries = sorted((e.name, e) for e in it)
        for name, entry in entries:
            try:
                st = entry.stat()
            except FileNotFoundError:  # removed while listing
                continue
            h.update(f"{sub}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
            n += 1
    return {"files": n, "hash": h.hexdigest()}


def manifest_path(cache_dir: Path, where, spec: dict) -> Path:
    """Named by the sources (folders, copies or not) and the settings, not their contents:
    a source that changes rebuilds the same file (see `load_or_build`)."""
    located = _located(where)
    srcs = [[str(s.folder), s.copies] for s in located]  # True: copies (named so since v2)
    key = hashlib.sha1(
        json.dumps({"format": FORMAT, "sources": srcs, **spec}, sort_keys=True).encode()
    )
    name = located[0].folder.name + (f"+{len(located) - 1}" if len(located) > 1 else "")
    return Path(cache_dir) / "manifests" / f"{name}-{key.hexdigest()[:12]}.csv"


def record_path(path: Path) -> Path:
    return path.with_suffix(".sources.json")


def _record(located: list[Located], file_list: Path | None) -> dict:
    listing = None
    if file_list:
        try:
            listing = hashlib.sha1(Path(file_list).read_bytes()).hexdigest()
        except FileNotFoundError:
            listing = None
    return {
        "format": FORMAT,
        "sources": [
            # "squashed" is the record's name (format 2) for copies of any kind
            {"folder": str(s.folder), "squashed": s.copies, **fingerprint(s.folder)}
            for s in located
        ],
        "file_list": listing,
    }


def why_stale(path: Path, now: dict) -> str | None:
    """None if the manifest at `path` was built from sources as they are now, else why not."""
    if not path.exists():
        return "not built yet"
    try:
        then = json.loads(record_path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return f"no record of what its sources held ({record_path(path).name} missing)"
    if then.get("format") != now["format"]:
        return "built by an older version (splits are now a hash of id and seed)"
    for old, new in zip(then.get("sources", []), now["sources"], strict=False):
        if old != new:
            if old.get("files") != new["files"]:
                return f"source {new['folder']} changed: {old.get('files')} -> {new['files']} files"
            return f"source {new['folder']} changed: files replaced or touched (sizes or mtimes)"
    if then.get("file_list") != now["file_list"]:
        return "the file list changed"
    return None


def write(path: Path, rows: list[Row]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((r.id, r.count, r.split, r.source) for r in rows)
    atomic_write_text(path, buf.getvalue())


def read(path: Path) -> list[Row]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames not in (COLUMNS, COLUMNS[:3]):
            raise BincountError(f"{path} is not a bincount manifest: delete it to rebuild it")
        return [Row(r["id"], int(r["count"]), r["split"], r.get("source") or "") for r in reader]


def load_or_build(
    where,
    cache_dir: Path,
    counts: list[int],
    fractions: tuple[float, float, float],
    seed: int,
    file_list: Path | None = None,
) -> tuple[Path, list[Row]]:
    """The manifest of `where` (a folder, or a list of folders or `Located`) for these
    settings: read if built from the sources as they are now, else (re)built and written."""
    located = _located(where)
    spec = {
        "counts": sorted(counts),
        "split": list(fractions),
        "seed": seed,
        "file_list": str(file_list) if file_list else None,
    }
    path = manifest_path(cache_dir, located, spec)
    now = _record(located, file_list)
    reason = why_stale(path, now)
    if reason is None:
        return path, read(path)
    log.info("manifest %s: building it (%s)", path, reason)
    ids = layout.file_list_ids(file_list) if file_list else None
    rows, skipped = build(located, sorted(counts), tuple(fractions), seed, ids)
    skipped_tsv = path.with_suffix(".skipped.tsv")
    if skipped:
        report = "\n".join(f"{i}\t{reason}" for i, reason in skipped)
        atomic_write_text(skipped_tsv, "id\treason\n" + report + "\n")
        shown = "\n  ".join(reason for _, reason in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning(
            "skipped %d of the listed images (full list in %s):\n  %s%s",
            len(skipped),
            skipped_tsv,
            shown,
            more,
        )
    else:
        skipped_tsv.unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)  # the record last: it says the csv is complete
    write(path, rows)
    atomic_write_json(record_path(path), now)
    sizes = Counter(r.split for r in rows)
    log.info("manifest %s: %s", path, ", ".join(f"{s} {sizes[s]}" for s in SPLITS))
    return path, rows
