"""Helpers of tests/sagemaker (fixtures in conftest.py). A real moto server on 127.0.0.1
behind a real recording proxy: the SDK and boto3 talk to the proxy (AWS_ENDPOINT_URL), which
forwards every request to moto and keeps a copy, so tests assert on the requests AWS would have
received (moto does not keep every field, e.g. MetricDefinitions).
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGION = "eu-west-1"
BUCKET = "bincount-test"
ROLE = "arn:aws:iam::123456789012:role/bincount-sagemaker"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def target(self) -> str:  # "SageMaker.CreateTrainingJob" for the JSON API
        return self.headers.get("x-amz-target", "")

    def json(self) -> dict:
        return json.loads(self.body or b"{}")

    def __getitem__(self, field: str):  # r["path"] as well as r.path
        return getattr(self, field)


class Recorder:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.moto = f"http://{upstream[0]}:{upstream[1]}"  # moto itself (its /moto-api)
        self.requests: list[Request] = []
        self.lock = threading.Lock()

    def sagemaker(self, action: str) -> list[dict]:
        with self.lock:
            return [r.json() for r in self.requests if r.target == f"SageMaker.{action}"]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


def _handler(recorder: Recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self):
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            lowered = {k.lower(): v for k, v in headers.items()}
            with recorder.lock:
                recorder.requests.append(Request(self.command, self.path, lowered, body))
            conn = http.client.HTTPConnection(*recorder.upstream, timeout=60)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

    return Handler


@pytest.fixture(scope="session")
def moto_proxy():
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    recorder = Recorder(moto.get_host_and_port())
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield recorder, f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    moto.stop()


def aws_env(endpoint: str, tmp: Path) -> dict[str, str]:
    """Fake credentials and region, every client sent to the proxy, the SDK's telemetry off."""
    sdk_config = tmp / "sagemaker-config.yaml"
    sdk_config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n"
    )
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
        "SAGEMAKER_ROLE": ROLE,
    }


@pytest.fixture
def aws(moto_proxy, monkeypatch, tmp_path):
    """A clean moto account (with the bucket BUCKET) and the environment pointing at it."""
    recorder, endpoint = moto_proxy
    conn = http.client.HTTPConnection(*recorder.upstream)
    conn.request("POST", "/moto-api/reset")
    conn.getresponse().read()
    env = aws_env(endpoint, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    recorder.clear()
    recorder.env = env
    return recorder


def s3_keys(prefix: str = "") -> list[str]:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def s3_read(key: str) -> bytes:
    import boto3

    return boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()
