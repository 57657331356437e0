"""The model.tar.gz that `bincount deploy` uploads (to a real moto server), served by AWS's own
container code: TorchServe's backend worker with sagemaker-pytorch-inference's handler service
(see endpoint_harness.py for what runs and the one shim), queried with real JPEG, PNG and JSON
bodies and every bad body the local server refuses."""

from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import sys
import time
from importlib import metadata
from types import SimpleNamespace

import boto3
import pytest
from endpoint_harness import (
    Frontend,
    Runtime,
    bincount_modules,
    extract_model,
    imports_of,
)
from images import bomb_jpeg
from packaging.requirements import Requirement
from packaging.version import Version
from PIL import Image
from sm_moto import BUCKET, REGION, ROLE, aws_env, s3_read

from bincount import inference
from bincount.sagemaker.launch import deploy
from bincount.settings import settings

PHOTO = "01843"  # 3 objects
# What the PyTorch 2.5 inference DLC has before code/requirements.txt is installed
# (deep-learning-containers pytorch/inference/docker/2.5/py3/Dockerfile.cpu: conda and pip
# installs, TorchServe's requirements/common.txt, the toolkit), with their own dependencies.
DLC_TORCH = {"torch": "2.5.1", "torchvision": "0.20.1"}
DLC_PYTHON = "3.11.9"
DLC_PACKAGES = (
    *DLC_TORCH,
    "torchaudio",
    "numpy",
    "scipy",
    "boto3",
    "packaging",
    "requests",
    "tqdm",
    "setuptools",
    "urllib3",
    "idna",
    "charset-normalizer",
    "cryptography",
    "h5py",
    "ipython",
    "scikit-learn",
    "pandas",
    "opencv-python",
    "pillow",
    "psutil",
    "wheel",
    "future",
    "sentencepiece",
    "captum",
    "torchserve",
    "sagemaker-pytorch-inference",
    "s3transfer",
)


def _name(dist: str) -> str:
    return dist.lower().replace("_", "-")


def closure(names) -> set[str]:
    """The distributions and everything they require (installed here), normalised names."""
    seen: set[str] = set()
    todo = [_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_name(req.name))
    return seen


@pytest.fixture(scope="module")
def container(moto_proxy, trained_run, tmp_path_factory):
    """`bincount deploy --serverless` against moto; the uploaded archive extracted as
    /opt/ml/model and loaded by TorchServe's worker with the CreateModel request's Environment."""
    recorder, endpoint_url = moto_proxy
    root = tmp_path_factory.mktemp("endpoint")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_env(endpoint_url, root).items():
            mp.setenv(key, value)
        conn = http.client.HTTPConnection(*recorder.upstream)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        recorder.clear()
        out = deploy.deploy(
            str(trained_run),
            name="bincount-container",
            s3_prefix=f"s3://{BUCKET}/deploy",
            settings={**settings()["deploy"], "serverless": True},
            role=ROLE,
        )
        (request,) = recorder.sagemaker("CreateModel")
        archive = s3_read(out["model_data"].split(f"s3://{BUCKET}/", 1)[1])
    model_dir = extract_model(archive, root)
    start = time.monotonic()
    frontend = Frontend(model_dir, request["PrimaryContainer"]["Environment"], root)
    try:
        loaded = frontend.load()
        yield SimpleNamespace(
            frontend=frontend,
            loaded=loaded,
            load_s=time.monotonic() - start,
            model_dir=model_dir,
            request=request,
            out=out,
        )
    finally:
        frontend.close()


@pytest.fixture(scope="module")
def photo(abid) -> bytes:
    return (abid / "bin-images" / f"{PHOTO}.jpg").read_bytes()


def png_of(jpeg: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_worker_loads_the_deployed_archive(container):
    assert container.loaded == (200, "loaded model model"), container.frontend.log_tail()
    env = container.request["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"
    assert "pytorch-inference" in container.request["PrimaryContainer"]["Image"]
    assert "-cpu-py311" in container.request["PrimaryContainer"]["Image"]
    code = container.model_dir / "code"
    assert (code / "inference.py").is_file()
    assert (code / "bincount" / "inference" / "__init__.py").is_file()


def test_jpeg_png_and_json_bodies(container, photo, trained_run):
    frontend = container.frontend
    jpeg = frontend.invoke(photo, "image/jpeg")
    assert (jpeg.status, jpeg.content_type) == (200, "application/json"), jpeg.text
    answer = json.loads(jpeg.body)
    # the container's answer is the library's, for the same model and photo
    model = inference.model_fn(trained_run)
    local = inference.predict_fn(inference.input_fn(photo, "image/jpeg"), model)
    assert answer["count"] == local["count"]
    assert answer["probabilities"] == pytest.approx(local["probabilities"], abs=1e-5)
    assert answer["model"]["version"] == local["model"]["version"]

    image = frontend.invoke(photo, "application/x-image")
    assert image.status == 200 and json.loads(image.body)["count"] == answer["count"]

    png = frontend.invoke(png_of(photo), "image/png", accept="*/*")
    assert png.status == 200 and png.content_type == "application/json", png.text
    assert json.loads(png.body)["count"] in model.counts

    single = frontend.invoke(
        json.dumps({"image": b64(photo), "expected": 3}).encode(),
        "application/json",
        accept="application/json",
    )
    assert single.status == 200, single.text
    verdict = json.loads(single.body)
    assert verdict["expected"] == 3 and verdict["verdict"] in ("match", "mismatch", "unsure")

    many = frontend.invoke(
        json.dumps({"images": [b64(photo), {"image": b64(png_of(photo)), "expected": 2}]}).encode(),
        "application/json; charset=utf-8",
    )
    assert many.status == 200, many.text
    first, second = json.loads(many.body)["predictions"]
    assert first["count"] == answer["count"] and "verdict" not in first
    assert second["expected"] == 2


def bad_bodies(photo: bytes) -> dict:
    """case -> (body, content type, accept, status and reason phrase AWS's code answers, words)"""
    limits = settings()["limits"]
    too_many = json.dumps({"images": [b64(photo)] * (limits["max_images"] + 1)}).encode()
    return {
        "empty body": (b"", "image/jpeg", None, 400, "Bad Request", "is empty"),
        "not an image": (b"%PDF-1.4 no", "image/jpeg", None, 400, "Bad Request", "not an image"),
        "truncated JPEG": (
            photo[: len(photo) // 3],
            "image/jpeg",
            None,
            400,
            "Bad Request",
            "truncated",
        ),
        "wrong content type": (photo, "text/plain", None, 415, "Unsupported Media Type", "text"),
        "decompression bomb": (
            bomb_jpeg(photo, 30000, 30000),
            "image/jpeg",
            None,
            413,
            "Request Entity Too Large",
            "max_pixels",
        ),
        "huge dimensions": (
            bomb_jpeg(photo, 8000, 8000),
            "image/jpeg",
            None,
            413,
            "Request Entity Too Large",
            "8000x8000",
        ),
        "bad JSON": (b'{"image": "abc', "application/json", None, 400, "Bad Request", "JSON"),
        "empty JSON": (b"", "application/json", None, 400, "Bad Request", "empty"),
        "JSON list": (b"[1, 2]", "application/json", None, 400, "Bad Request", "not an object"),
        "bad base64": (
            b'{"image": "not base64!"}',
            "application/json",
            None,
            400,
            "Bad Request",
            "not valid base64",
        ),
        "bad expected": (
            json.dumps({"image": b64(photo), "expected": -1}).encode(),
            "application/json",
            None,
            400,
            "Bad Request",
            "not a count",
        ),
        "too many images": (
            too_many,
            "application/json",
            None,
            413,
            "Request Entity Too Large",
            "max_images",
        ),
        "unacceptable Accept": (photo, "image/jpeg", "text/csv", 406, "Not Acceptable", "accept"),
        "body over the limit": (
            b"\xff" * (limits["max_body_bytes"] + 10),
            "image/jpeg",
            None,
            413,
            "Request Entity Too Large",
            "max_body_bytes",
        ),
    }


def test_bad_bodies_get_their_4xx_through_aws_code(container, photo):
    frontend = container.frontend
    got = {}
    for case, (body, ctype, accept, status, phrase, words) in bad_bodies(photo).items():
        answer = frontend.invoke(body, ctype, accept)
        first_line = answer.text.splitlines()[0] if answer.body else ""
        # the toolkit's answer: our one-line message, then the traceback it always appends
        got[case] = (answer.status, answer.phrase, words in first_line)
        assert got[case] == (status, phrase, True), (case, answer.text[:2000])
    # a JSON body that is not UTF-8 never reaches input_fn: the toolkit decodes it and fails
    raw = frontend.invoke(b'{"image": "\xff\xfe"}', "application/json")
    assert raw.status == 500 and "utf-8" in raw.text.splitlines()[0], raw.text[:500]
    # and the worker keeps serving
    assert frontend.invoke(photo, "image/jpeg").status == 200


def test_predict_endpoint_through_the_container(container, abid, tmp_path, monkeypatch, capsys):
    """`bincount predict --endpoint` (boto3's real InvokeEndpoint client) against the container:
    a photo the container refuses (a truncated JPEG: only the model decodes it) is one row
    with the container's status and message; the others are answered."""
    from bincount import cli

    photos = sorted((abid / "bin-images").glob("*.jpg"))[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:4000])
    runtime = Runtime(container.frontend)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime.url)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    out_csv = tmp_path / "endpoint.csv"
    inputs = [str(photos[0]), str(broken), str(photos[1])]
    options = ["--expected", "3", "--out", str(out_csv), "--region", REGION]
    try:
        code = cli.main(["predict", "--endpoint", "bincount-container", *inputs, *options])
    finally:
        runtime.close()
    out = capsys.readouterr().out
    assert code == 0, out
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["predicted"] != "" for r in rows] == [True, False, True]
    assert all(r["verdict"] in ("match", "mismatch", "unsure") for r in (rows[0], rows[2]))
    assert rows[1]["error"].startswith("the endpoint answered 400: image does not decode")
    assert "Traceback" not in rows[1]["error"] and f"skipped {broken}" in out


def test_requirements_are_what_the_container_needs(container):
    """Every distribution the worker imported to load the model and answer is in the DLC or
    installed by code/requirements.txt; the pins are the versions tested here and fit the
    DLC's torch and Python (pip would otherwise replace the image's torch)."""
    lines = (container.model_dir / "code" / "requirements.txt").read_text().split()
    reqs = [Requirement(line) for line in lines]
    for req in reqs:
        assert req.specifier, f"{req} is not pinned"
        assert metadata.version(req.name) in req.specifier, req
        python = metadata.metadata(req.name).get("Requires-Python")
        if python:
            assert Version(DLC_PYTHON) in Requirement(f"python{python}").specifier, (req, python)
        for line in metadata.requires(req.name) or []:
            dep = Requirement(line)
            if _name(dep.name) in DLC_TORCH and (dep.marker is None or "extra" not in str(dep)):
                assert DLC_TORCH[_name(dep.name)] in dep.specifier, (req, dep)

    # what bincount's modules that the worker loaded import (at module level or in a function)
    # comes with the DLC or is a requirement of its own
    loaded = bincount_modules(container.frontend.log.read_text())
    served = {
        "bincount.inference",
        "bincount.models.network",
        "bincount.sagemaker.container.endpoint",
    }
    assert served <= loaded
    assert "bincount.models.module" not in loaded  # the endpoint serves without Lightning
    owners = metadata.packages_distributions()
    code = container.model_dir / "code"
    needed = {
        _name(dist)
        for top in imports_of(code, loaded) - set(sys.stdlib_module_names) - {"bincount"}
        for dist in owners.get(top, [top])
    }
    listed = {_name(r.name) for r in reqs}
    assert needed - closure(DLC_PACKAGES) <= listed, "imported in the container, installed by none"
    assert listed <= needed | closure(needed), "required but never imported"


def test_the_worker_fits_a_serverless_endpoint(container):
    """The worker's peak memory after loading and answering, against the serverless memory
    size deploy asks for (the Java frontend's own memory is not counted here)."""
    from endpoint_harness import peak_rss_mb

    peak = peak_rss_mb(container.frontend.proc.pid)
    memory = settings()["deploy"]["serverless_memory_mb"]
    print(
        f"worker started and loaded in {container.load_s:.1f} s; peak RSS {peak} MB of the "
        f"serverless endpoint's {memory} MB"
    )
    assert 0 < peak < memory
