"""The server's logs: one access line per request, waitress's queue warning rate-limited, and
JSON lines for log shippers (`bincount serve --log-format json`).

An access line holds the time, method, path, status, bytes sent, milliseconds, and the count
(or counts) answered or the error; in JSON each is a field of the line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

ACCESS = logging.getLogger("bincount.access")
FORMATS = ("text", "json")


def access(method: str, path: str, status: int, nbytes: int, ms: float, **outcome) -> None:
    """Log one request: `outcome` is count=... (or counts=[...]) or error=..."""
    fields = {
        "method": method or "-",
        "path": path or "-",
        "status": int(status),
        "bytes": int(nbytes),
        "ms": round(ms, 1),
        **{k: v for k, v in outcome.items() if v is not None},
    }
    ACCESS.info("%s", _text(fields), extra={"fields": fields})


def _text(f: dict) -> str:
    line = f"{f['method']} {f['path']} {f['status']} {f['bytes']} B {f['ms']} ms"
    for key in ("count", "counts"):
        if key in f:
            line += f" {key}={json.dumps(f[key], separators=(',', ':'))}"
    if "error" in f:
        line += f" error={json.dumps(f['error'])}"
    return line


def _utc(record: logging.LogRecord) -> str:
    t = datetime.fromtimestamp(record.created, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-11-26T00:10:00.123Z message` (UTC)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and an access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": _utc(record), "level": record.levelname, "logger": record.name}
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class EverySeconds(logging.Filter):
    """Let one record through per `seconds`; the next one says how many were dropped."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.last = float("-inf")
        self.dropped = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self.lock:
            if now - self.last < self.seconds:
                self.dropped += 1
                return False
            if self.dropped:
                record.msg = f"{record.msg} ({self.dropped} such warnings dropped before it)"
            self.last, self.dropped = now, 0
        return True


def configure(fmt: str = "text", queue_warning_every: float = 60.0) -> None:
    """Format the root logger's lines as `fmt` (text or json) and rate-limit waitress's
    "Task queue depth is N" warning (one a request under load otherwise)."""
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    limit_queue_warnings(queue_warning_every)


def limit_queue_warnings(seconds: float) -> None:
    queue = logging.getLogger("waitress.queue")
    for f in [f for f in queue.filters if isinstance(f, EverySeconds)]:
        queue.removeFilter(f)
    queue.addFilter(EverySeconds(seconds))
