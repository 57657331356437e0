"""What the command line reads and writes (bincount.fileio): only regular files, inputs under a
size cap, outputs never over a device, a FIFO or a folder, a failed write one line. Hostile
inputs are real: /dev/zero, FIFOs, folders, a file-size limit (a disk that fills up)."""

from __future__ import annotations

import csv
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bincount import fileio
from bincount.errors import BincountError
from bincount.fileio import FileError

BINCOUNT = [sys.executable, "-m", "bincount.cli"]
GIB = 2**30


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _one_line(proc, *words):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


RSS = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)
sys.exit(proc.returncode)
"""


def _bincount(*args, limit_fsize: int | None = None, timeout=600, env=None):
    """The console script in a subprocess (through a wrapper that prints the command's peak
    RSS, in bytes, as the last line of its stderr: `proc.peak_rss`)."""

    def limits():
        if limit_fsize is not None:  # a disk that fills up: writes past it fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))

    proc = subprocess.run(
        [sys.executable, "-c", RSS, *BINCOUNT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limits,
        env={**os.environ, **(env or {})},
    )
    lines = proc.stderr.rstrip("\n").split("\n")
    proc.peak_rss, proc.stderr = int(lines[-1]), "\n".join(lines[:-1])
    return proc


def _main(capsys, *args) -> subprocess.CompletedProcess:
    """The console script in this process (the errors that need no model: quick)."""
    from bincount.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)


@functools.cache
def _rss_bound() -> int:
    """1 GB; torch, torchvision and timm alone take ~0.87 GB here: where they take more, what
    they take plus 256 MB (reading /dev/zero would take all the memory there is)."""
    imports = subprocess.run(
        [sys.executable, "-c", RSS, sys.executable, "-c", "import torch, torchvision, timm"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    baseline = int(imports.stderr.strip().splitlines()[-1])
    return max(1 * GIB, baseline + 256 * 2**20)


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "folder", "missing"])
def test_read_input_refuses_what_is_not_a_regular_file(target, fifo, tmp_path):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": fifo, "folder": tmp_path}.get(
        target, tmp_path / "missing.csv"
    )
    with pytest.raises(FileError) as e:
        fileio.read_input(path, "CSV list")  # a FIFO: refused without waiting for a writer
    words = {
        "/dev/zero": "is a device",
        "fifo": "is a FIFO",
        "folder": "is a folder",
        "missing": "does not exist",
    }[target]
    assert words in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, BincountError) and isinstance(e.value, OSError)


def test_read_input_has_a_size_cap_set_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "list.csv"
    path.write_bytes(b"x" * 1000)
    assert fileio.read_input(path) == b"x" * 1000
    monkeypatch.setenv(fileio.MAX_INPUT_ENV, "999")
    with pytest.raises(FileError, match="larger than the limit of 999 bytes"):
        fileio.read_input(path)
    monkeypatch.setenv(fileio.MAX_INPUT_ENV, "lots")
    with pytest.raises(BincountError, match="is not a size"):
        fileio.read_input(path)


def test_read_input_text_says_binary_is_not_text(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FileError, match="is not UTF-8 text"):
        fileio.read_input_text(path)


# --- writing -------------------------------------------------------------------------------


def test_a_fifo_or_a_folder_is_never_replaced(fifo, tmp_path):
    for target, words in ((fifo, "is a FIFO"), (tmp_path, "is a folder")):
        with pytest.raises(FileError, match=words):
            fileio.atomic_write_text(target, "x")
        with pytest.raises(FileError, match=words):
            fileio.atomic_copy(__file__, target)
    assert fifo.is_fifo() and tmp_path.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary left behind


def test_a_device_is_refused_before_anything_is_written():
    # check_output only looks (it never writes): safe on a real device node, even as root
    with pytest.raises(FileError, match="/dev/null is a device"):
        fileio.check_output("/dev/null", "-o")


def test_a_full_disk_is_one_line(tmp_path):
    script = (
        "import sys\nfrom bincount.fileio import atomic_write_bytes\n"
        "try:\n    atomic_write_bytes(sys.argv[1], b'x' * 100000)\n"
        "except OSError as e:\n    print(type(e).__name__, e)\n"
    )

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    assert proc.stdout.startswith("FileError cannot write"), proc.stdout + proc.stderr
    assert "File too large" in proc.stdout and "free some space" in proc.stdout
    assert target.read_bytes() == b"old"  # the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# --- the commands --------------------------------------------------------------------------


def _photo_list(tmp_path, photo: Path, *others) -> Path:
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "expected"])
        w.writerow([photo, 3])
        for other in others:
            w.writerow([other, 3])
    return listing


@pytest.mark.long
def test_predict_with_dev_zero_and_a_fifo_in_a_list_stays_small(trained_run, abid, tmp_path, fifo):
    photo = next(iter(sorted((abid / "bin-images").glob("*.jpg"))))
    listing = _photo_list(tmp_path, photo, "/dev/zero", fifo)
    out = tmp_path / "predictions.csv"
    proc = _bincount("predict", trained_run, listing, "-o", out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.peak_rss < _rss_bound(), f"peak RSS {proc.peak_rss / GIB:.2f} GiB"
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["predicted"] and not rows[0]["error"]
    assert "is a device, not a file" in rows[1]["error"]
    assert "is a FIFO" in rows[2]["error"]
    assert "skipped /dev/zero" in proc.stdout


@pytest.mark.parametrize("target", ["fifo", "folder"])
def test_predict_refuses_a_fifo_or_a_folder_as_output_before_loading(
    target, abid, tmp_path, fifo, capsys
):
    out = fifo if target == "fifo" else tmp_path
    photo = next(iter(sorted((abid / "bin-images").glob("*.jpg"))))
    proc = _main(capsys, "predict", tmp_path / "no-model-needed", photo, "-o", out)
    _one_line(proc, f"-o {out} is a")
    assert fifo.is_fifo()


def test_a_csv_list_that_is_a_device_or_too_large_is_one_line(tmp_path, capsys, monkeypatch):
    device = tmp_path / "list.csv"
    device.symlink_to("/dev/zero")  # a list "named" like a CSV that is a device
    proc = _bincount("predict", tmp_path, device, timeout=120)
    _one_line(proc, f"CSV list {device} is a device")
    assert proc.peak_rss < _rss_bound()
    big = tmp_path / "big.csv"
    big.write_text("path\n" + "x.jpg\n" * 100)
    monkeypatch.setenv(fileio.MAX_INPUT_ENV, "100")
    proc = _main(capsys, "predict", tmp_path, big)
    _one_line(proc, "larger than the limit of 100 bytes", fileio.MAX_INPUT_ENV)


def test_a_broken_csv_list_is_one_line(tmp_path, capsys):
    for name, text, words in (
        ("nul.csv", "path\nx\0y.jpg\n", "line 2: no usable image path"),
        ("nopath.csv", "path,expected\n,3\n", "line 2: no usable image path"),
        ("huge-field.csv", "path\n" + "x" * 200000 + "\n", "not a readable CSV"),
        ("binary.csv", None, "is not UTF-8 text"),
    ):
        listing = tmp_path / name
        if text is None:
            listing.write_bytes(b"path\n\xff\xfe\xfa\n")
        else:
            listing.write_text(text)
        _one_line(_main(capsys, "predict", tmp_path, listing), words)


def test_predict_on_a_folder_names_what_it_left_out(trained_run, abid, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    source = next(iter(sorted((abid / "bin-images").glob("*.jpg"))))
    shutil.copy(source, folder / "a.jpg")
    with Image.open(source) as im:
        im.save(folder / "b.tiff")
        im.save(folder / "c.gif")
        im.save(folder / "d.webp")
        im.convert("RGB").save(folder / "e.bmp")
    (folder / "notes.txt").write_text("not a photo")
    out = tmp_path / "p.csv"
    proc = _bincount("predict", trained_run, folder, "-o", out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sources = [Path(r["source"]).name for r in csv.DictReader(out.open())]
    assert sources == ["a.jpg", "b.tiff", "c.gif", "d.webp", "e.bmp"]  # none left out silently
    assert "left out 1 files that are not photos (1 .txt)" in proc.stdout


def test_verify_with_an_order_file_that_is_a_device_is_one_line(tmp_path, capsys):
    _one_line(_main(capsys, "verify", tmp_path, "/dev/zero"), "/dev/zero is a device")
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 5000 + "]" * 5000 + "\n")
    _one_line(_main(capsys, "verify", tmp_path, deep), "levels deep")


@pytest.mark.long
def test_predict_onto_a_read_only_or_full_disk_is_one_line(trained_run, abid, tmp_path):
    photo = next(iter(sorted((abid / "bin-images").glob("*.jpg"))))
    proc = _bincount(
        "predict", trained_run, photo, "-o", tmp_path / "p.csv", limit_fsize=64, timeout=300
    )
    _one_line(proc, f"cannot write {tmp_path / 'p.csv'}", "File too large")
    locked = tmp_path / "read-only"
    locked.mkdir()
    # read-only even for root: an immutable folder (ext4's chattr +i)
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here: no read-only folder to try")
    try:
        proc = _bincount("predict", trained_run, photo, "-o", locked / "p.csv", timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    _one_line(proc, f"cannot write {locked / 'p.csv'}", "Operation not permitted")
    assert not any(locked.iterdir())


def test_export_onto_a_full_disk_or_a_file_is_one_line(trained_run, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    _one_line(_main(capsys, "export", trained_run, "-o", target), "is not a folder")
    proc = _bincount("export", trained_run, "-o", tmp_path / "onnx", limit_fsize=4096)
    _one_line(proc, "cannot write", "File too large")


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{model}", "{photo}"],
        ["export", "{model}"],
        ["evaluate", "{model}"],
        ["calibrate", "{model}"],
        ["verify", "{model}", "{orders}"],
    ],
)
def test_a_model_that_is_a_fifo_or_a_device_is_one_line(command, fifo, abid, tmp_path, capsys):
    """torch would block on a FIFO forever (and read a device without end)."""
    photo = next(iter(sorted((abid / "bin-images").glob("*.jpg"))))
    orders = tmp_path / "orders.jsonl"
    orders.write_text('{"id": "x"}\n')

    def hung(*_):
        raise TimeoutError("the command blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        for model, words in ((fifo, "is a FIFO"), ("/dev/zero", "is a device")):
            args = [a.format(model=model, photo=photo, orders=orders) for a in command]
            _one_line(_main(capsys, *args), f"MODEL {model} {words}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
