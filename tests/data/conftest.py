"""S3 fixtures for the data tests: a real S3 API server (moto's) on 127.0.0.1 loaded with real
images from ../shared/abid, and a loopback proxy in front of it that injects faults."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from fault_proxy import FaultProxy  # tests/data/fault_proxy.py
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
