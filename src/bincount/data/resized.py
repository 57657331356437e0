"""A cache of the images resized to the training size: decoded and resized once, reused.

`ensure(images, size, fill, cache_dir, resize)` returns the cache for these images ((id, path)
pairs: the photos of one or several sources), building it when it is missing or stale. A cache
is one folder under `<cache_dir>/resized/`, named by the source folders (`abid+3` for
`data=all`), the size and a hash of (image paths, ids, size, fill, resize):

    images.npy   uint8 (N, size, size, 3), letterboxed or squashed exactly as training would
    index.json   the ids in row order, size, fill, resize, the files' fingerprint, build time

A different size, fill, resize or id list is another folder; a changed source (an image added,
replaced or touched: its size or mtime) no longer matches the fingerprint and the cache is
rebuilt in place. Both files are written under temporary names and renamed, index last, so an
interrupted build is never read. Readers open `images.npy` memory-mapped (each DataLoader
worker on first use): the page cache is shared, nothing is copied per worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bincount import preprocess
from bincount.data import transforms
from bincount.errors import BincountError
from bincount.fileio import atomic_write_json

log = logging.getLogger(__name__)
FORMAT = 2
INDEX = "index.json"
ARRAY = "images.npy"


def fingerprint(images: list[tuple[str, Path]]) -> str:
    """A hash of every image's size and modification time: changes when the source does."""
    h = hashlib.sha1()
    for image_id, path in images:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BincountError(
                f"{path} is missing: the source changed since its manifest was built; run "
                "again (the manifest is rebuilt when its sources change)"
            ) from None
        h.update(f"{image_id}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def cache_dir_for(
    cache_dir: Path, images: list[tuple[str, Path]], size: int, fill, resize: str = "letterbox"
) -> Path:
    spec = {
        "format": FORMAT,
        "images": [[i, str(Path(p).resolve())] for i, p in images],
        "size": size,
        "fill": [int(v) for v in fill],
        "resize": resize,
    }
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    # named by the sources' folders (the first by name, and how many more), as manifests are
    names = sorted({Path(p).parent.parent.name for _, p in images}) or ["empty"]
    first = names[0] + (f"+{len(names) - 1}" if len(names) > 1 else "")
    return Path(cache_dir) / "resized" / f"{first}-{size}px-{key}"


def _read_index(path: Path) -> dict | None:
    try:
        return json.loads((path / INDEX).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build(
    images: list[tuple[str, Path]], size: int, fill, out: Path, resize: str = "letterbox"
) -> dict:
    """Decode and resize every image into `out/images.npy`; returns the index written."""
    start = time.perf_counter()
    fp = fingerprint(images)  # before reading: a file changed meanwhile means a rebuild
    out.mkdir(parents=True, exist_ok=True)
    print_every = max(1, len(images) // 10)
    if resize == "squash":
        square = transforms.Squash(size)
    else:
        square = transforms.Letterbox(size, tuple(int(v) for v in fill))
    tmp = out / f".{ARRAY}.{os.getpid()}.tmp"
    try:
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(images), size, size, 3)
        )
        for i, (_, path) in enumerate(images):
            try:
                im = transforms.open_rgb(path, size)
            except OSError as e:
                raise BincountError(
                    f"{path} cannot be decoded ({e}): remove it or refetch it"
                ) from None
            array[i] = np.asarray(square(im))
            if (i + 1) % print_every == 0:
                log.info("resized cache: %d/%d images", i + 1, len(images))
        array.flush()
        del array
        (out / INDEX).unlink(missing_ok=True)  # a stale index must not describe the new array
        os.replace(tmp, out / ARRAY)
    finally:
        tmp.unlink(missing_ok=True)
    index = {
        "format": FORMAT,
        "sources": sorted({str(Path(p).parent.parent.resolve()) for _, p in images}),
        "size": size,
        "fill": [int(v) for v in fill],
        "resize": resize,
        "fingerprint": fp,
        "build_seconds": round(time.perf_counter() - start, 2),
        "ids": [i for i, _ in images],
    }
    atomic_write_json(out / INDEX, index)
    return index


def ensure(
    images: list[tuple[str, Path]], size: int, fill, cache_dir: Path, resize: str = "letterbox"
) -> Path:
    """The cache folder for these (id, path) images, built (or rebuilt, if a source changed)."""
    preprocess.check_resize(resize)
    images = [(i, Path(p)) for i, p in images]
    out = cache_dir_for(cache_dir, images, size, fill, resize)
    index = _read_index(out)
    if index is not None and (out / ARRAY).is_file():
        if index.get("fingerprint") == fingerprint(images):
            return out
        log.info("resized cache %s: the source changed since it was built; rebuilding", out)
    log.info("resized cache: %s %d images to %d px into %s", resize, len(images), size, out)
    index = build(images, size, fill, out, resize)
    log.info("resized cache built in %.1f s: %s", index["build_seconds"], out)
    return out


class ResizedImages:
    """Read access to a built cache: `image(id)` is the resized PIL image."""

    def __init__(self, path: Path):
        index = _read_index(path)
        if index is None or not (path / ARRAY).is_file():
            raise BincountError(
                f"{path} is not a built resized-image cache: run `bincount cache images`"
            )
        self.path = path
        self.size = int(index["size"])
        self.rows = {image_id: i for i, image_id in enumerate(index["ids"])}
        self._array: np.ndarray | None = None  # opened on first use, in each worker process

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.rows

    def __getstate__(self) -> dict:  # workers reopen the memory map themselves
        return {**self.__dict__, "_array": None}

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path / ARRAY, mmap_mode="r")
        return self._array

    def image(self, image_id: str) -> Image.Image:
        return Image.fromarray(np.asarray(self.array()[self.rows[image_id]]))
