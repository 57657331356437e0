"""Fetch images and metadata from a store (the bucket, or a folder in its layout) into a folder.

For each id: the metadata is fetched and checked (valid JSON with EXPECTED_QUANTITY), then the
image (it must decode). Each file is written under a temporary name and renamed only once
complete and verified, image first and metadata last, so a metadata file in the target always
has its image. Re-running skips what is already there: an interrupted fetch resumes. Throttling,
5xx and dropped connections are retried with backoff; keys that do not exist, and files that are
broken at the source, are listed in the report at the end (`fetch-report.json`).

Which ids: a file list (the seed's by default), or every metadata key of the source; optionally
only the counts wanted, and at most `limit` images, taken in order, so the same arguments give
the same images.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bincount.data import layout, manifest
from bincount.data.retry import with_retries
from bincount.data.stores import Missing, Store, Transient
from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)
REPORT = "fetch-report.json"
LOCK = ".fetch.lock"
OTHER_COUNTS = ".other-counts.tsv"
# This many "access denied" answers before any success: the bucket needs credentials.
DENIED_LIMIT = 20


@dataclass
class Report:
    source: str
    target: str
    counts: list[int] | None = None
    limit: int | None = None
    considered: int = 0  # ids looked at
    complete: dict[str, int] = field(default_factory=dict)  # id -> count, in the target now
    already: int = 0  # of those, complete before this run
    files: int = 0  # files downloaded and written by this run
    bytes: int = 0
    retries: int = 0
    other_counts: int = 0  # ids whose count was not wanted
    missing: list[str] = field(default_factory=list)  # keys, with why in `why_missing`
    why_missing: dict[str, str] = field(default_factory=dict)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason) after retries
    refused: list[str] = field(default_factory=list)  # listed names with unsafe ids
    seconds: float = 0.0
    finished: bool = False

    def summary(self) -> str:
        mb = self.bytes / 1e6
        rate = f", {self.files / self.seconds:.1f} files/s" if self.seconds > 0 else ""
        lines = [
            f"{len(self.complete)} images complete in {self.target} "
            f"({self.already} already there; {self.files} files, {mb:.1f} MB fetched in "
            f"{self.seconds:.1f} s{rate}; {self.retries} retries)"
        ]
        if self.other_counts:
            lines.append(f"{self.other_counts} images left out: count not in {self.counts}")
        for name, items in (
            (
                "missing at the source",
                [
                    k
                    if self.why_missing.get(k, "not found") == "not found"
                    else f"{k} ({self.why_missing[k]})"
                    for k in self.missing
                ],
            ),
            ("broken at the source (not kept)", [f"{k}: {r}" for k, r in self.invalid]),
            ("failed after retries (run again to resume)", [f"{k}: {r}" for k, r in self.failed]),
            ("refused (unsafe ids)", self.refused),
        ):
            if items:
                shown = "\n  ".join(items[:10])
                more = f"\n  ... and {len(items) - 10} more" if len(items) > 10 else ""
                lines.append(f"{len(items)} {name}:\n  {shown}{more}")
        if self.missing or self.invalid or self.failed or self.refused:
            lines.append(f"full lists in {Path(self.target) / REPORT}")
        return "\n".join(lines)


@dataclass
class _Meta:
    """Stage one of an id: its metadata, checked."""

    id: str
    data: bytes | None = None
    count: int | None = None
    local: bool = False
    problem: tuple[str, str, str] | None = None  # (kind, key, reason)
    retries: int = 0


@dataclass
class _Done:
    """Stage two of an id: its image and then its metadata written (or why not)."""

    meta: _Meta
    files: int = 0
    bytes: int = 0
    image_local: bool = False
    problem: tuple[str, str, str] | None = None
    retries: int = 0


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:  # a full disk, a read-only folder: nothing a retry would mend
        raise _Fatal(
            f"cannot write {path} ({e.strerror}): free some space or choose another --to, "
            "then run again to resume"
        ) from None


class _OtherCounts:
    """Ids left out by `counts`, with their count, kept in the target as they are found, so a
    resumed or repeated fetch does not ask for their metadata again."""

    def __init__(self, target: Path):
        self.path = target / OTHER_COUNTS
        self.known: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.path.read_text().splitlines():
                image_id, _, count = line.partition("\t")
                if count.isdigit():  # a line cut short by a kill is ignored
                    self.known[image_id] = int(count)
        self.file = None

    def add(self, image_id: str, count: int) -> None:
        if self.known.get(image_id) == count:
            return
        self.known[image_id] = count
        if self.file is None:
            self.file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self.file.write(f"{image_id}\t{count}\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _Fatal(BincountError):
    """Stops the whole fetch (unlike a BincountError about one file)."""


class _Stopped(Exception):
    """The fetch is being stopped (Ctrl-C, an error elsewhere): no more requests or retries."""


class _Fetcher:
    def __init__(self, store: Store, target: Path, attempts: int):
        self.store = store
        self.target = target
        self.attempts = attempts
        self.stop = threading.Event()

    def _get(self, key: str, check) -> tuple[bytes, int]:
        """(bytes, retries) of a key that passes `check`; raises Missing, Transient (after the
        last attempt) or BincountError (from check: broken at the source)."""
        retries = []

        def attempt() -> bytes:
            if self.stop.is_set():
                raise _Stopped(key)
            return self.store.get(key)

        data = with_retries(attempt, self.attempts, retries.append, sleep=self.stop.wait)
        check(data)
        return data, len(retries)

    def metadata(self, image_id: str) -> _Meta:
        path = layout.metadata_path(self.target, image_id)
        key = f"{layout.METADATA}/{image_id}.json"
        if path.is_file():
            with contextlib.suppress(BincountError):  # a damaged local copy is fetched again
                data = path.read_bytes()
                return _Meta(image_id, data, manifest.parse_count(data, path), local=True)
        result = _Meta(image_id)
        try:
            result.data, result.retries = self._get(key, lambda d: None)
            result.count = manifest.parse_count(result.data, key)
        except Missing as e:
            result.problem = ("missing", key, str(e))
        except BincountError as e:
            result.problem = ("invalid", key, str(e).removeprefix(f"{key}: "))
        except Transient as e:
            result.problem = ("failed", key, str(e))
        return result

    def image(self, meta: _Meta) -> _Done:
        path = layout.image_path(self.target, meta.id)
        key = f"{layout.IMAGES}/{meta.id}.jpg"
        done = _Done(meta, image_local=path.is_file())
        try:
            if not done.image_local:
                data, done.retries = self._get(key, manifest.verify_jpeg)
                _write(path, data)
                done.files, done.bytes = 1, len(data)
            if not meta.local:
                _write(layout.metadata_path(self.target, meta.id), meta.data)
                done.files += 1
                done.bytes += len(meta.data)
        except Missing as e:
            done.problem = ("missing", key, str(e))
        except _Fatal:
            raise
        except BincountError as e:
            done.problem = ("invalid", key, str(e))
        except Transient as e:
            done.problem = ("failed", key, str(e))
        return done


@contextlib.contextmanager
def _locked(target: Path, wait_for_lock: bool) -> Iterator[None]:
    """One fetch at a time per folder (the kernel frees the lock if the process dies)."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        lock = open(target / LOCK, "w")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as e:
        raise BincountError(
            f"cannot write into {target} ({e.strerror}): choose a folder you may write to with --to"
        ) from None
    with lock as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait_for_lock else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BincountError(
                f"another fetch is writing into {target}: wait for it to end (or stop it), "
                "then run again"
            ) from None
        yield


def remove_partial_files(target: Path) -> int:
    """Delete temporary files an interrupted fetch left behind; how many."""
    stale = [p for d in (layout.IMAGES, layout.METADATA) for p in (target / d).glob(".*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def finished(target: Path, source: str) -> bool:
    """True if `target` holds a finished fetch of `source` with nothing left to retry."""
    try:
        report = json.loads((Path(target) / REPORT).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        isinstance(report, dict)
        and report.get("source") == source
        and report.get("finished")
        and not report.get("failed")
    )


def _progress(total: int | None, enabled: bool | None):
    """A tqdm bar on stderr; enabled=None: only when stderr is a terminal."""
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(total=total, unit="img", desc="fetch", disable=disable, dynamic_ncols=True)


def fetch(
    store: Store,
    target: Path,
    ids: Iterable[str] | None = None,
    counts: Iterable[int] | None = None,
    limit: int | None = None,
    concurrency: int = 16,
    attempts: int = 8,
    progress: bool | None = None,
    wait_for_lock: bool = False,
) -> Report:
    """Fetch `ids` (every metadata key of the store if None) from `store` into `target`.

    `counts` keeps only images with those EXPECTED_QUANTITY values; `limit` keeps at most that
    many images, the first ones in order. `progress=None` shows a bar on a terminal only.
    """
    target = Path(target).expanduser().resolve()
    if str(getattr(store, "folder", "")) == str(target):
        raise BincountError(f"--to {target} is the source itself: fetch into another folder")
    if limit is not None and limit < 1:
        raise BincountError(f"--limit {limit} must be at least 1 (or left out for no limit)")
    if concurrency < 1:
        raise BincountError(f"--concurrency {concurrency} must be at least 1")
    wanted = set(counts) if counts is not None else None
    report = Report(store.description, str(target), sorted(wanted) if wanted else None, limit=limit)
    ids = list(ids) if ids is not None else None
    if ids is not None:
        for image_id in ids:
            layout.check_id(image_id)  # refuse the whole list before anything is written
    candidates = iter(dict.fromkeys(ids)) if ids is not None else store.metadata_ids(report.refused)
    # The bar counts ids looked at; their number is known for a list without a limit.
    total = len(set(ids)) if ids is not None and limit is None else None
    with _locked(target, wait_for_lock):
        removed = remove_partial_files(target)
        if removed:
            log.info("removed %d partial files left by an interrupted fetch", removed)
        start = time.monotonic()
        bar = _progress(total, progress)
        try:
            _run(
                _Fetcher(store, target, attempts),
                candidates,
                wanted,
                limit,
                concurrency,
                report,
                bar,
            )
        finally:
            bar.close()
            report.seconds = round(time.monotonic() - start, 3)
        report.finished = True
        atomic_write_json(target / REPORT, asdict(report))
        by_count: dict[str, list[str]] = {}
        for image_id, count in sorted(report.complete.items()):
            by_count.setdefault(str(count), []).append(f"{layout.METADATA}/{image_id}.json")
        listing = {c: by_count[c] for c in sorted(by_count, key=int)}
        atomic_write_json(target / layout.FILE_LIST, listing)
    return report


def _run(fetcher, candidates, wanted, limit, concurrency, report: Report, bar) -> None:
    """Stage one (metadata) runs ahead in a window; its results are taken in candidate order,
    so which images make the limit does not depend on timing; stage two (image) overlaps."""
    window: deque[Future] = deque()
    busy: set[Future] = set()
    denied_before_success = [0]

    def note(kind: str, key: str, reason: str) -> None:
        if kind == "missing":
            report.missing.append(key)
            report.why_missing[key] = reason
            if reason == "access denied" and not report.complete and not report.files:
                denied_before_success[0] += 1
                if denied_before_success[0] >= DENIED_LIMIT:
                    if getattr(fetcher.store, "signed", False):
                        raise BincountError(
                            f"{report.source} refuses your AWS credentials ({key}: access "
                            "denied): use credentials (AWS_PROFILE) that may read the bucket"
                        )
                    raise BincountError(
                        f"{report.source} refuses anonymous reads ({key}: access denied): pass "
                        "--signed with AWS credentials that may read it"
                    )
        else:
            getattr(report, kind).append((key, reason))

    def finish(done: _Done) -> None:
        report.retries += done.retries
        report.files += done.files
        report.bytes += done.bytes
        if done.problem:
            note(*done.problem)
        else:
            report.complete[done.meta.id] = done.meta.count
            if done.meta.local and done.image_local:
                report.already += 1
        bar.update(1)
        bar.set_postfix_str(
            f"{report.bytes / 1e6:.0f} MB, {len(report.missing)} missing", refresh=False
        )

    def drain(block: bool) -> None:
        if not busy:
            return
        done, _ = wait(busy, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            busy.discard(fut)
            finish(fut.result())

    others = _OtherCounts(fetcher.target)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch")
    try:
        exhausted = False
        while True:
            full = limit is not None and len(report.complete) + len(busy) >= limit
            while not full and not exhausted and len(window) < 2 * concurrency:
                try:
                    image_id = next(candidates)
                except StopIteration:
                    exhausted = True
                    break
                known = others.known.get(image_id)
                if wanted is not None and known is not None and known not in wanted:
                    report.considered += 1  # left out before, for its count: no request
                    report.other_counts += 1
                    bar.update(1)
                    continue
                window.append(pool.submit(fetcher.metadata, image_id))
            if full or not window:
                if not busy:
                    break
                drain(block=True)
                continue
            meta = window.popleft().result()
            report.considered += 1
            report.retries += meta.retries
            if meta.problem:
                note(*meta.problem)
                bar.update(1)
            elif wanted is not None and meta.count not in wanted:
                report.other_counts += 1
                others.add(meta.id, meta.count)
                bar.update(1)
            else:
                busy.add(pool.submit(fetcher.image, meta))
            drain(block=False)
    finally:
        fetcher.stop.set()  # on the normal path nothing is left to stop
        for fut in window:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        others.close()
