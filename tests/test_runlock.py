"""One training per run folder (bincount.runlock): a second one into a folder in use is
refused at once, the first's results intact; stale locks are taken over; a finished run is
reused only to resume it; default run names do not collide."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from runner import ROOT, run_train

from bincount import runlock
from bincount.errors import BincountError

HOLD = """
import sys, time
from bincount import runlock
runlock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds=60):
    """A process that holds `folder`'s lock (until killed); returns it once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_trainings_into_one_folder_the_second_is_refused_at_once(tiny_source, tmp_path):
    run = tmp_path / "run"
    common = [
        "experiment=smoke",
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run}",
        "data.num_workers=0",
        "data.max_per_split=16",
        "test=false",
    ]
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *common, "seed=7"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / runlock.LOCK).is_file() or not (run / runlock.LOCK).read_text():
            assert first.poll() is None and time.monotonic() < deadline, "no lock taken"
            time.sleep(0.05)
        started = time.monotonic()
        second = run_train(*common, "seed=8", timeout=60)
        took = time.monotonic() - started
        _, err = first.communicate(timeout=600)
    finally:
        first.kill()
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2, second.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: run folder"), second.stderr
    assert f"in use by pid {first.pid} on {socket.gethostname()}" in lines[0]
    assert took < 3, f"refused after {took:.1f}s"
    # the first run is whole, and only its own
    assert first.returncode == 0, err[-3000:]
    assert "seed: 7" in (run / "config.yaml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_checkpoint"] and os.path.isfile(metrics["best_checkpoint"])
    steps = (run / "csv" / "metrics.csv").read_text().splitlines()
    assert steps[0].count("epoch") >= 1 and len(steps) >= 2
    assert "seed=8" not in (run / ".hydra" / "overrides.yaml").read_text()
    assert not (run / runlock.LOCK).exists()  # released at the end


def test_a_finished_run_is_reused_only_to_resume_it(trained_run, tmp_path):
    proc = run_train(f"hydra.run.dir={trained_run}", "lr=0.002", timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "already holds a finished run" in lines[0]
    assert f"ckpt_path={trained_run}/checkpoints/last.ckpt" in lines[0]


def test_the_lock_is_taken_and_released_in_process(tmp_path):
    folder = tmp_path / "run"
    runlock.acquire(folder)
    assert runlock.holds(folder)
    info = json.loads((folder / runlock.LOCK).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert runlock.acquire(folder) == folder  # re-entrant
    runlock.release(folder)
    assert not runlock.holds(folder) and not (folder / runlock.LOCK).exists()


def test_a_held_lock_refuses_another_process(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(BincountError, match=f"in use by pid {holder.pid}"):
            runlock.acquire(folder)
        with pytest.raises(BincountError, match=f"in use by pid {holder.pid}"):
            runlock.check_free(folder)
        with pytest.raises(BincountError, match="in use"):
            runlock.check_argv(["lr=1", f"hydra.run.dir={folder}"])
    finally:
        holder.kill()
        holder.wait()
    runlock.check_free(folder)  # the lock died with its process
    runlock.acquire(folder)
    runlock.release(folder)


def test_the_other_processes_of_a_ddp_training_run_under_its_first_ones_lock(tmp_path):
    """Lightning's launcher and torchrun start every process after the first with LOCAL_RANK
    set: those share the folder the first (local rank 0) holds; rank 0 of another is refused."""
    folder = tmp_path / "run"
    holder = _holder(folder)
    code = (
        "import sys; from bincount import runlock; runlock.check_argv(sys.argv[1:]); "
        "runlock.acquire(sys.argv[1].split('=', 1)[1]); print('ran')"
    )
    try:
        for rank, ran in (("1", True), ("0", False)):
            env = {**os.environ, "LOCAL_RANK": rank}
            proc = subprocess.run(
                [sys.executable, "-c", code, f"hydra.run.dir={folder}"],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            assert ("ran" in proc.stdout) is ran, (rank, proc.stderr[-500:])
            if not ran:
                assert f"in use by pid {holder.pid}" in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_log_line(tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    stale = {"pid": int(dead), "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    (folder / runlock.LOCK).write_text(json.dumps(stale))
    with caplog.at_level("WARNING", logger="bincount.runlock"):
        runlock.acquire(folder)
    try:
        assert f"took over the stale lock of pid {dead}" in caplog.text
        assert json.loads((folder / runlock.LOCK).read_text())["pid"] == os.getpid()
    finally:
        runlock.release(folder)


def test_a_live_pid_in_an_unlocked_file_is_not_taken_over(tmp_path):
    """A filesystem without flock: the pid recorded on this host still runs -> refused."""
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": holder.pid, "host": socket.gethostname(), "started": "t"}
        (folder / runlock.LOCK).write_text(json.dumps(info))
        with pytest.raises(BincountError, match=f"in use by pid {holder.pid}"):
            runlock.acquire(folder)
    finally:
        holder.kill()
        holder.wait()


def test_default_run_names_are_sub_second():
    from hydra import compose, initialize_config_dir

    from bincount.config import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}-\d{6}", cfg.hydra.run.dir.rsplit("/", 1)[-1])
    assert cfg.hydra.callbacks.run_lock._target_ == "bincount.runlock.RunLock"
