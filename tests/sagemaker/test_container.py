"""The bundle's sagemaker_entry.py on two hosts without torchrun (how a tuning job's trial runs
on several instances: SageMaker runs the script once per host and Lightning starts the
processes), meeting over gloo on this machine. The job, trial, torchrun and spot paths run
through AWS's own container code in test_aws_container.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bincount.config import project_root
from bincount.sagemaker.launch import bundle

TINY = {
    "experiment": "smoke",
    "data.image_size": "64",
    "data.max_per_split": "8",
    "data.num_workers": "0",
    "batch_size": "4",
    "trainer.max_epochs": "1",
}


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    return bundle.build(project_root(), tmp_path_factory.mktemp("code") / "code").path


def host_env(base: Path, channel: Path, hosts=("algo-1",), current="algo-1", **extra) -> dict:
    base.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "BINCOUNT_"))}
    env.update(
        SM_CHANNEL_DATA=str(channel),
        SM_MODEL_DIR=str(base / "model"),
        SM_OUTPUT_DATA_DIR=str(base / "output"),
        SM_OUTPUT_DIR=str(base),
        SM_HOSTS=json.dumps(list(hosts)),
        SM_CURRENT_HOST=current,
        SM_NUM_GPUS="0",
        BINCOUNT_SCRATCH=str(base / "scratch"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def args(hps: dict) -> list[str]:
    return [a for k, v in hps.items() for a in (f"--{k}", v)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_hosts(code: Path, channel: Path, tmp_path: Path):
    hosts = ("algo-1", "algo-2")
    port = free_port()
    hps = {**TINY, "data.max_per_split": "16"}
    procs = []
    for host in hosts:
        env = host_env(tmp_path / host, channel, hosts, host)
        # SageMaker runs the script once per host, no torchrun: Lightning starts the processes.
        env.update(SM_MASTER_ADDR="127.0.0.1", SM_MASTER_PORT=str(port))
        cmd = [sys.executable, "sagemaker_entry.py", *args(hps)]
        log = open(tmp_path / f"{host}.log", "w")  # noqa: SIM115
        procs.append((subprocess.Popen(cmd, cwd=code, env=env, stdout=log, stderr=log), log))
    for proc, log in procs:
        try:
            proc.wait(timeout=900)
        finally:
            proc.kill()
            log.close()
    for (proc, _), host in zip(procs, hosts, strict=True):
        assert proc.returncode == 0, (tmp_path / f"{host}.log").read_text()[-4000:]
    return [
        json.loads((tmp_path / host / "output/ranks" / f"rank-{r}.json").read_text())
        for r, host in enumerate(hosts)
    ]


@pytest.mark.slow
def test_two_trial_hosts_without_torchrun_train_disjoint_shards_to_the_same_weights(
    code, tiny_source, tmp_path
):
    first, second = _two_hosts(code, tiny_source, tmp_path)
    assert first["world_size"] == second["world_size"] == 2
    assert (first["host"], second["host"]) == ("algo-1", "algo-2")
    shard1, shard2 = set(first["epochs"][0]["ids"]), set(second["epochs"][0]["ids"])
    assert shard1 and shard2 and not shard1 & shard2
    assert len(shard1) == len(shard2) == 8  # 16 training images, half each
    assert first["params_sha256"] == second["params_sha256"]
    assert first["global_step"] == second["global_step"] > 0
    # Only the first host writes the model. (Lightning gives every rank the first rank's
    # checkpoint folder; on one machine the two hosts share it, so each host writing its own copy,
    # MultiHostDDP, is checked in container/test_bridge.py.)
    assert (tmp_path / "algo-1/model/checkpoints/best.ckpt").is_file()
    assert not (tmp_path / "algo-2/model").exists()
