"""The commands as a user runs them: serve (a real process), predict (folder, order list, s3
prefix), orders, calibrate (through the console script's main, in this process); and their
errors."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bincount import batch

BINCOUNT = [sys.executable, "-m", "bincount.cli"]


def test_serve_command_answers_on_the_port_it_prints(served_run, photo):
    proc = subprocess.Popen(
        [
            *BINCOUNT,
            "serve",
            served_run,
            "--port",
            "0",
            "--backend",
            "onnx",
            "--log-format",
            "json",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "bincount serve exited"
            if m := re.search(r"on http://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
        assert port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/invocations?expected=3", photo, {"Content-Type": "image/jpeg"})
        answer = json.loads(conn.getresponse().read())
        assert answer["model"]["backend"] == "onnx" and answer["expected"] == 3
        # its access line, as JSON for a log shipper
        doc = {}
        while doc.get("logger") != "bincount.access":
            line = proc.stderr.readline()
            assert line, "no access line"
            doc = json.loads(line) if line.startswith("{") else {}
        assert doc["path"] == "/invocations?expected=3" and doc["status"] == 200
        assert doc["count"] == answer["count"] and doc["bytes"] > 0 and doc["ms"] > 0
        assert doc["time"].endswith("Z") and doc["method"] == "POST"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_predict_a_folder(served_run, abid, tmp_path, bincount):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("01843.jpg", "00037.jpg", "00038.jpg"):
        (folder / name).write_bytes((abid / "bin-images" / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "predictions.csv"
    proc = bincount("predict", served_run, folder, "-o", out)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["source"].rsplit("/", 1)[1] for r in rows] == [
        "00037.jpg",
        "00038.jpg",
        "01843.jpg",
        "broken.jpg",
    ]
    assert all(r["predicted"] in {"1", "2", "3", "4", "5"} for r in rows[:3])
    assert "not an image" in rows[3]["error"] and not rows[3]["predicted"]
    assert "predicted 3 of 4 images" in proc.stdout


def test_orders_then_predict_with_expected_column_prints_the_table(served_run, tmp_path, bincount):
    orders = tmp_path / "orders.csv"
    proc = bincount(
        "orders", served_run, "--split", "test", "--mismatch-rate", "0.5", "--out", orders
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(orders.open()))
    assert rows and {"path", "count", "expected"} <= set(rows[0])
    assert any(r["count"] != r["expected"] for r in rows)
    out = tmp_path / "predictions.csv"
    proc = bincount("predict", served_run, orders, "--expected-column", "expected", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert (
        "| orders | wrong orders | flagged mismatch | precision | recall | unsure |" in proc.stdout
    )
    predicted = list(csv.DictReader(out.open()))
    assert len(predicted) == len(rows)
    assert {r["verdict"] for r in predicted} <= {"match", "mismatch", "unsure"}
    wrong = sum(r["count"] != r["expected"] for r in rows)
    assert re.search(rf"\| {len(rows)} \| {wrong} \|", proc.stdout)


def test_calibrate_command_reports_ece_before_and_after(served_run, tmp_path, bincount):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(served_run, run, ignore=shutil.ignore_patterns("onnx"))
    proc = bincount("calibrate", run, "--target-precision", "0.8")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"ECE \d\.\d+ -> \d\.\d+", proc.stdout)
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["verify"]["target_precision"] == 0.8


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["predict", "{run}", "/nonexistent/photos"], "does not exist"),
        (["predict", "{run}", "{photo}", "--expected-column", "qty"], "not a column"),
        (["serve", "/nonexistent/run"], "does not exist"),
        (["calibrate", "{run}", "--target-precision", "1.5"], "between 0 and 1"),
        (["serve", "{run}", "--port", "99999"], "port 99999 is not a TCP port"),
        (["export", "{run}", "--check", "/nonexistent/missing.jpg"], "no such image file"),
        (["evaluate", "{run}", "--data", "/nonexistent"], "--data /nonexistent: no such folder"),
        (["evaluate", "{run}", "--data", "{run}"], "no bin-images/ or metadata/ in it"),
    ],
)
def test_command_errors_say_what_to_do(served_run, abid, args, words, bincount):
    photo = abid / "bin-images" / "01843.jpg"
    args = [a.format(run=served_run, photo=photo) for a in args]
    proc = bincount(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and words in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["export", "{run}", "--check", "missing.jpg"], "--check missing.jpg: no such image file"),
        (["serve", "{run}", "--port", "99999"], "port 99999 is not a TCP port"),
    ],
)
def test_a_bad_argument_is_one_line_before_any_work(trained_run, args, words):
    proc = subprocess.run(
        [*BINCOUNT, *(a.format(run=trained_run) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and words in proc.stderr
    assert not (trained_run / "onnx").exists()  # nothing exported


def test_a_busy_port_fails_before_the_model_loads(bincount):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the model does not exist either: the port is what is checked first
        proc = bincount("serve", "/nonexistent/run", "--port", port)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"127.0.0.1:{port} (the port is in use): pick another --port" in proc.stderr


def test_fetch_from_a_partial_copy_says_how_to_take_it_all(abid, tmp_path, bincount):
    proc = bincount("data", "fetch", "--source", abid, "--to", tmp_path / "a", "--limit", 20)
    assert proc.returncode == 0, proc.stderr
    assert "of the seed's file list" in proc.stdout and "pass --all" in proc.stdout
    proc = bincount(
        "data", "fetch", "--source", abid, "--to", tmp_path / "b", "--all", "--limit", 3
    )
    assert proc.returncode == 0 and "3 images complete" in proc.stdout
    assert "missing" not in proc.stdout and "--all" not in proc.stdout


def test_upload_without_credentials_hints_at_an_upload_flag(abid, tmp_path, monkeypatch, bincount):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    proc = bincount("data", "upload", abid, "s3://some-bucket/abid", "--dry-run")
    assert proc.returncode == 2 and "no AWS credentials" in proc.stderr
    assert "--unsigned" in proc.stderr and "--signed" not in proc.stderr


@pytest.fixture
def s3_photos(abid, monkeypatch, tmp_path):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bins")
    for name in ("01843.jpg", "00037.jpg"):
        s3.put_object(
            Bucket="bins", Key=f"photos/{name}", Body=(abid / "bin-images" / name).read_bytes()
        )
    s3.put_object(Bucket="bins", Key="photos/notes.txt", Body=b"not a photo")
    yield "s3://bins/photos/"
    server.stop()


def test_predict_an_s3_prefix(s3_photos, torch_model, photo):
    items = batch.collect([s3_photos])
    assert [i.source for i in items] == ["s3://bins/photos/00037.jpg", "s3://bins/photos/01843.jpg"]
    answers = batch.predict_local(torch_model, items, None)
    assert all("count" in a for a in answers)
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1")
