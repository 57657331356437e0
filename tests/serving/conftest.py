"""Fixtures of the serving tests: a calibrated copy of the session's trained run, its ONNX
export, a real server on 127.0.0.1 in front of it, and real (and broken) image bytes."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from images import bomb_jpeg

from bincount import calibration, cli, export, inference
from bincount.serving.server import make_server

PHOTO = "01843"  # the reference project's test image: 3 objects


@pytest.fixture(scope="session")
def served_run(trained_run, tmp_path_factory) -> Path:
    """A copy of the trained run (best.ckpt, config.yaml, metrics.json), calibrated and exported
    to ONNX; the shared trained run stays untouched."""
    run = tmp_path_factory.mktemp("served") / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "best.ckpt", run / "checkpoints")
    for name in ("config.yaml", "metrics.json"):
        shutil.copy(trained_run / name, run)
    calibration.calibrate(run)
    export.export_onnx(run)
    return run


@pytest.fixture(scope="session")
def torch_model(served_run) -> inference.Model:
    return inference.model_fn(served_run, backend="torch")


@pytest.fixture(scope="session")
def onnx_model(served_run) -> inference.Model:
    return inference.model_fn(served_run, backend="onnx")


@pytest.fixture(scope="session")
def photo(abid) -> bytes:
    return (abid / "bin-images" / f"{PHOTO}.jpg").read_bytes()


@pytest.fixture(scope="session")
def photos(abid) -> list[Path]:
    """12 real photos spread over the mirror."""
    paths = sorted((abid / "bin-images").glob("*.jpg"))
    return paths[:: max(1, len(paths) // 12)][:12]


class Server:
    """A running server: `request(method, path, body, headers) -> (status, json or text)`."""

    def __init__(self, model: inference.Model):
        self.httpd = make_server(model, "127.0.0.1", 0, threads=4)
        self.port = self.httpd.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.run, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, data.decode("utf-8", "replace")

    def post(self, body: bytes, content_type: str | None, path: str = "/invocations", **headers):
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.request("POST", path, body, headers)

    def close(self) -> None:
        self.httpd.close()


@pytest.fixture(scope="session")
def server(torch_model):
    s = Server(torch_model)
    yield s
    s.close()


@pytest.fixture
def new_server(torch_model):
    """new_server() -> a Server of its own (to change its settings), closed after the test."""
    made = []
    yield lambda: made.append(Server(torch_model)) or made[-1]
    for s in made:
        s.close()


@pytest.fixture(scope="session")
def onnx_server(onnx_model):
    s = Server(onnx_model)
    yield s
    s.close()


@pytest.fixture(scope="session")
def make_bomb(photo):
    """make_bomb(side) -> the real photo claiming side x side pixels in its frame header."""
    return lambda side: bomb_jpeg(photo, side, side)


@pytest.fixture
def bincount(capsys):
    """bincount(*args) -> (exit code, stdout, stderr), as the console script would give."""

    def run(*args):
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run
