"""Safe file access for everything the command line reads and writes.

Writes: a file is written to a temporary name beside it, then renamed into place. A reader
never sees a half-written file, and an interrupted write leaves the old one intact. Only a
regular file (or a new path) is ever replaced: a device, a FIFO or a folder as the target is
refused (renaming over `/dev/full` would replace the device node), and a write that fails (a
read-only or full disk) is one line naming the file and the fix (`FileError`).

Reads (`read_input`): only regular files, at most `max_input_bytes()` (64 MiB by default, the
environment variable BINCOUNT_MAX_INPUT_BYTES overrides it): `/dev/zero` or a FIFO named as an
input is refused before a byte is read, and a file that grows past the cap while read is cut
off, so a hostile input never fills the memory.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from bincount.errors import BincountError

# The process umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: the largest file the command line reads (a CSV list, an order file, a photo, a JSON)
DEFAULT_MAX_INPUT_BYTES = 64 * 2**20
MAX_INPUT_ENV = "BINCOUNT_MAX_INPUT_BYTES"


class FileError(BincountError, OSError):
    """A file that cannot be read or written as asked: one line with the fix. An OSError
    too, so code that handles I/O errors handles it."""

    def __str__(self) -> str:  # OSError would print its errno tuple
        return str(self.args[0]) if self.args else ""


def max_input_bytes() -> int:
    """The read cap: $BINCOUNT_MAX_INPUT_BYTES (bytes) or DEFAULT_MAX_INPUT_BYTES."""
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BincountError(
            f"{MAX_INPUT_ENV}={raw!r} is not a size: set a whole number of bytes, e.g. "
            f"{MAX_INPUT_ENV}={DEFAULT_MAX_INPUT_BYTES}, or unset it"
        )
    return value


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _named(path, what: str) -> str:
    """How a message names the file: "order file orders.jsonl", or the bare path."""
    return f"{what} {path}" if what else str(path)


def _mode(path: Path, name: str, doing: str, fix: str) -> int | None:
    """The file type bits of `path`; None when it does not exist; FileError when it cannot be
    looked at (saying what was being done and the fix)."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FileError(f"cannot {doing} {name} ({e.strerror or e}): {fix}") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def read_input(path: str | os.PathLike, what: str = "", limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (default `max_input_bytes()`);
    FileError (one line) for a missing file, a folder, a device, a FIFO or a larger file."""
    path = Path(path)
    name = _named(path, what)
    cap = max_input_bytes() if limit is None else int(limit)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileError(f"{name} does not exist: check the path") from None
    except OSError as e:
        raise FileError(f"cannot read {name} ({e.strerror or e}): check the path") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FileError(f"{name} is {_kind(mode)}, not a file: give a regular file")
    with os.fdopen(fd, "rb") as f:
        os.set_blocking(fd, True)
        size = os.fstat(fd).st_size
        over = (
            f"{name} is larger than the limit of {_size(cap)} ({MAX_INPUT_ENV}): give a "
            "smaller file, or raise the limit"
        )
        if size > cap:
            raise FileError(over)
        try:
            data = f.read(cap + 1)  # it may have grown since: never more than the cap
        except OSError as e:
            raise FileError(f"cannot read {name} ({e.strerror or e}): check the file") from None
    if len(data) > cap:
        raise FileError(over)
    return data


def check_input(path: str | os.PathLike, what: str = "", folder_ok: bool = False) -> Path:
    """`path` is a regular file (or a folder, if `folder_ok`), else FileError: for the files
    read by a library (a checkpoint torch loads), which must never be a device or a FIFO (a
    FIFO would block the command forever). A missing path is left to the caller to name."""
    path = Path(path)
    name = _named(path, what)
    mode = _mode(path, name, "read", "check the path")
    if mode is None or stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return path
    wanted = "a file or a folder" if folder_ok else "a regular file"
    raise FileError(f"{name} is {_kind(mode)}: give {wanted}")


def read_input_text(path: str | os.PathLike, what: str = "", limit: int | None = None) -> str:
    """`read_input` decoded as UTF-8 (a byte-order mark dropped); FileError if it is not text."""
    data = read_input(path, what, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        name = _named(path, what)
        raise FileError(
            f"{name} is not UTF-8 text (byte {e.start}): give a text file (CSV or JSON lines)"
        ) from None


def check_output(path: str | os.PathLike, what: str = "") -> Path:
    """`path` may be written: a new path or a regular file (FileError for a folder, a device,
    a FIFO or a socket, which a rename would replace or could not)."""
    path = Path(path)
    name = _named(path, what)
    mode = _mode(path, name, "write", "choose another path")
    if mode is not None and not stat.S_ISREG(mode):
        raise FileError(f"{name} is {_kind(mode)}: write to a file name (a new path or a file)")
    return path


def _write_error(path: Path, e: OSError) -> FileError:
    return FileError(
        f"cannot write {path} ({e.strerror or e}): free some space or choose a writable "
        "folder for it"
    )


def _fresh_temp(path: Path) -> tuple[int, str]:
    check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(path, e) from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    fd, tmp = _fresh_temp(path)
    try:
        # mkstemp makes 0600: keep the mode of the file replaced, else the usual one.
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        check_output(path)  # it may have become a device or a folder meanwhile
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, FileError):
            raise
        raise _write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_copy(src: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy `src` to `path` through a temporary file beside it (large files: streamed)."""
    path = Path(path)
    fd, tmp = _fresh_temp(path)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        check_output(path)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, FileError | FileNotFoundError):
            raise
        raise _write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
