"""Fixtures of the serving tests: a real server on 127.0.0.1 in front of the calibrated run
(`served_run`, tests/conftest.py), and broken image bytes."""

from __future__ import annotations

import http.client
import json
import threading

import pytest
from images import bomb_jpeg

from bincount import inference
from bincount.serving.server import make_server


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
