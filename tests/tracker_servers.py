"""The trackers' real servers and files, for tests that ask them what a run logged.

- `mlflow_server(store, artifacts)`: `mlflow server` on 127.0.0.1, a port the OS picks, on a
  SQLite store. Served by waitress (`--waitress-opts`) with MLflow's job executor off: the
  default (uvicorn + 7 huey consumer processes) takes minutes to start on a busy 2-core machine;
  the tracking REST API is the same Flask app either way.
- `tensorboard(logdir)`: `tensorboard` on 127.0.0.1, a port the OS picks, its data loaded before
  it serves (`--reload_task blocking`), queried by `hparams_sessions`.
- `wandb_records(path)`: the records of an offline W&B run file (`run-*.wandb`, what
  `wandb sync` uploads), read with W&B's own protobuf schema.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def _wait_for(proc: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    """Read the process's stderr until a line matches (stderr keeps draining after)."""
    found: list[re.Match] = []
    seen: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            seen.append(line)
            m = re.search(pattern, line)
            if m and not found:
                found.append(m)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not found:
        _stop(proc)
        raise RuntimeError(f"{proc.args[:2]} did not start: {''.join(seen)[-3000:]}")
    return found[0]


def _stop(proc: subprocess.Popen) -> None:
    """End the server and the processes it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def _server(cmd: list[str], pattern: str, env: dict | None = None, timeout=300):
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        yield _wait_for(proc, pattern, timeout)
    finally:
        _stop(proc)


@contextmanager
def mlflow_server(store: Path, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on a SQLite store; yields its URL."""
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{store}",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--waitress-opts",
        "--threads=4",
    ]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with _server(cmd, r"Serving on (http://127\.0\.0\.1:\d+)", env) as m:
        yield m.group(1)


@contextmanager
def tensorboard(logdir: Path) -> Iterator[str]:
    """`tensorboard --logdir` with everything loaded before it serves; yields its URL."""
    cmd = [
        str(BIN / "tensorboard"),
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--load_fast",
        "false",
        "--reload_task",
        "blocking",
        "--reload_interval",
        "0",
    ]
    with _server(cmd, r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/") as m:
        yield m.group(1)


def call(url: str, body: dict | None = None) -> dict:
    """GET (or POST `body` as JSON) and the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def hparams_sessions(url: str, hparams: list[str], metrics: list[str]) -> list[dict]:
    """The HParams plugin's session groups (its `/session_groups` route, as the tab asks)."""
    body = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": h} for h in hparams] + [{"metric": {"tag": m}} for m in metrics],
        "startIndex": 0,
        "sliceSize": 1000,
    }
    return call(f"{url}/data/plugin/hparams/session_groups", body)["sessionGroups"]


def mlflow_runs(url: str, experiment: str = "bincount") -> list[dict]:
    """Every run of the experiment, from the tracking server's REST API: name, status, tags,
    params and latest metrics as plain dicts."""
    api = f"{url}/api/2.0/mlflow"
    exp = call(f"{api}/experiments/get-by-name?experiment_name={experiment}")["experiment"]
    runs, token = [], None
    while True:
        body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
        if token:
            body["page_token"] = token
        page = call(f"{api}/runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            break
    return [
        {
            "id": r["info"]["run_id"],
            "name": r["info"]["run_name"],
            "status": r["info"]["status"],
            "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])},
            "params": {p["key"]: p["value"] for p in r["data"].get("params", [])},
            "metrics": {m["key"]: m["value"] for m in r["data"].get("metrics", [])},
        }
        for r in runs
    ]


# W&B's transaction log: LevelDB's log format under its own 7-byte file header.
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """The `wandb_internal_pb2.Record`s of an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2

    raw = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", raw[:_HEADER])
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0, f"{path}: not a W&B run file"
    records, parts, pos = [], [], _HEADER
    while pos + _HEADER <= len(raw):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + _HEADER])
        data = raw[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 0 and length == 0:  # zero padding at the end of the file
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        parts.append(data)
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def wandb_run(path: Path, timeout: float = 60):
    """The last `run` record of an offline run file (name, group, job type, tags). W&B's
    service process writes the file after `run.finish()` returns: wait for the run's exit."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    runs = [r.run for r, k in zip(records, kinds, strict=True) if k == "run"]
    assert runs, f"{path}: no run record ({kinds})"
    return runs[-1]


def wandb_summary(path: Path) -> dict:
    """The run's summary as its `summary` records leave it: key -> value."""
    out: dict = {}
    for r in wandb_records(path):
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                key = item.key or "/".join(item.nested_key)
                out[key] = json.loads(item.value_json)
    return out
