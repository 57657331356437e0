"""The server's memory: its resident size, and handing freed memory back to the OS.

glibc keeps memory freed by a large request (the decoded images: PIL allocates them in 16 MB
blocks) in its heaps for later reuse, so the resident size stays at the peak of the largest
request ever served. `release()` asks glibc to return what is free (malloc_trim); the app
calls it after requests that decoded many pixels (figures: README, "Serving").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def release() -> bool:
    """Return free heap memory to the OS (glibc malloc_trim); False where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc (Linux)."""
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS in /proc status")
