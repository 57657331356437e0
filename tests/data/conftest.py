"""S3 fixtures for the data tests: a real S3 API server (moto's) on 127.0.0.1 loaded with real
images from ../shared/abid, and a loopback proxy in front of it that injects faults."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bincount.data import s3


@pytest.fixture(scope="session")
def moto_endpoint():
    """One moto S3 server for the session; tests use their own buckets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3env(moto_endpoint, monkeypatch, tmp_path):
    """boto3 pointed at the moto server with test credentials, and nothing else reachable."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


def sample_ids(abid: Path, n: int) -> list[str]:
    """n real ids spread over the whole mirror (so over all counts)."""
    ids = sorted(p.stem for p in (abid / "metadata").glob("*.json"))
    step = max(1, len(ids) // n)
    return ids[::step][:n]


@pytest.fixture
def make_bucket(s3env) -> Callable[..., str]:
    """make_bucket(files={key: bytes}, public=True) -> the name of a new bucket holding them."""

    def _make(files: dict[str, bytes], public: bool = True) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3")
        client.create_bucket(Bucket=name)
        if public:
            client.put_bucket_policy(Bucket=name, Policy=s3.public_read_policy(name))
        for key, data in files.items():
            client.put_object(Bucket=name, Key=key, Body=data)
        return name

    return _make


@pytest.fixture
def abid_files(abid) -> Callable[[list[str]], dict[str, bytes]]:
    """abid_files(ids) -> {bucket key: the real bytes of ../shared/abid} for these ids."""
    return lambda ids: bucket_files(abid, ids)


def bucket_files(abid: Path, ids: list[str]) -> dict[str, bytes]:
    files = {}
    for i in ids:
        files[f"bin-images/{i}.jpg"] = (abid / "bin-images" / f"{i}.jpg").read_bytes()
        files[f"metadata/{i}.json"] = (abid / "metadata" / f"{i}.json").read_bytes()
    return files


@pytest.fixture
def abid_bucket(abid, make_bucket):
    """(bucket name, ids): a public bucket with 24 real images and their metadata."""
    ids = sample_ids(abid, 24)
    return make_bucket(bucket_files(abid, ids)), ids


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of the moto server.

    `fault(method, path, n)` is asked for every request (n: how many times that path was seen
    before) and returns None to forward it, or "503" / "500" (an S3 error answer), or
    "truncate" (the headers promise the whole body, half is sent, the connection is closed).
    `delay` seconds are waited before each forwarded request.
    """

    def __init__(self, upstream: str, fault=None, delay: float = 0.0):
        self.upstream = upstream.removeprefix("http://")
        self.fault = fault or (lambda method, path, n: None)
        self.delay = delay
        self.seen: dict[str, int] = {}
        self.methods: Counter[str] = Counter()
        self.injected: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                with proxy.lock:
                    n = proxy.seen.get(path, 0)
                    proxy.seen[path] = n + 1
                    proxy.methods[self.command] += 1
                    fault = proxy.fault(self.command, path, n)
                    if fault:
                        proxy.injected.append((fault, path))
                if fault in ("503", "500"):
                    code = "SlowDown" if fault == "503" else "InternalError"
                    err = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
                    self._reply(int(fault), {"Content-Type": "application/xml"}, err.encode())
                    return
                time.sleep(proxy.delay)
                status, headers, data = proxy._forward(self.command, self.path, self.headers, body)
                if fault == "truncate" and len(data) > 1:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(status, dict(headers), data)

            def _reply(self, status, headers, data):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            skip = {"content-length", "connection", "transfer-encoding"}
            conn.request(
                method, path, body, {k: v for k, v in headers.items() if k.lower() not in skip}
            )
            response = conn.getresponse()
            data = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in skip and k.lower() not in ("server", "date")
            ]
            return response.status, kept, data
        finally:
            conn.close()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(s3env, monkeypatch):
    """fault_proxy(fault=..., delay=...) -> a FaultProxy; AWS_ENDPOINT_URL now points to it."""
    proxies = []

    def _make(fault=None, delay: float = 0.0) -> FaultProxy:
        proxy = FaultProxy(s3env, fault, delay)
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        return proxy

    yield _make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def every_nth():
    """every_nth(n, kind, first_tries=1): a fault rule for fault_proxy."""
    return _every_nth


def _every_nth(n: int, kind: str, first_tries: int = 1):
    """A fault rule: `kind` on the first `first_tries` GETs of every n-th object path."""
    counter = itertools.count()
    chosen: dict[str, bool] = {}

    def rule(method, path, seen):
        if method != "GET" or path.count("/") < 3:  # object GETs only (not listings)
            return None
        if path not in chosen:
            chosen[path] = next(counter) % n == 0
        return kind if chosen[path] and seen < first_tries else None

    return rule
