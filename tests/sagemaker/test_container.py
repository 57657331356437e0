"""The entrypoint run as SageMaker runs it: the bundle's sagemaker_entry.py with `--key value`
hyperparameters, SM_* variables and a channel folder of real images; for two instances, two
real torchrun launches (SageMaker's own torchrun driver) or two bridge-launched processes,
meeting over gloo on this machine."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bincount.config import project_root
from bincount.sagemaker import bundle
from bincount.sagemaker.spec import metric_definitions

TINY = {
    "experiment": "smoke",
    "data.image_size": "64",
    "data.max_per_split": "8",
    "data.num_workers": "0",
    "batch_size": "4",
    "trainer.max_epochs": "1",
}
TORCHRUN_DRIVER = (
    Path(sys.prefix)
    / f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    / "sagemaker/train/container_drivers/distributed_drivers/torchrun_driver.py"
)


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


def test_entrypoint_trains_what_train_py_would_and_saves_a_run_folder(
    code, tiny_source, tmp_path, make_cfg
):
    hps = {
        **TINY,
        "lr": "0.003",
        "model.drop_rate": "0.1",
        "data.max_per_split": "4",
        "test": "false",
    }
    env = host_env(tmp_path / "host", tiny_source)
    proc = subprocess.run(
        [sys.executable, str(code / "sagemaker_entry.py"), *args(hps), "--sagemaker_program", "x"],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    # The objective as a tuning job reads it: the last `val/acc=` of the log is the best value.
    regex = {m["Name"]: m["Regex"] for m in metric_definitions()}["val/acc"]
    values = [float(v) for v in re.findall(regex, log)]
    model = tmp_path / "host/model"
    metrics = json.loads((model / "metrics.json").read_text())
    assert values and values[-1] == pytest.approx(metrics["objective"]["value"], abs=1e-4)
    assert metrics["best_checkpoint"] == "checkpoints/best.ckpt"
    assert "test" not in metrics  # test=false travelled too
    ckpt = torch.load(model / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["preprocess"]["image_size"] == 64
    # Same config as `python train.py <the same overrides>`, but where the container keeps things.
    import yaml

    remote = yaml.safe_load((model / "config.yaml").read_text())
    local = make_cfg(*[f"{k}={v}" for k, v in hps.items()], f"data.source={tiny_source}")
    assert remote["lr"] == local.lr == 0.003
    assert remote["model"]["_target_"] == local.model._target_
    assert remote["model"]["drop_rate"] == 0.1
    assert remote["data"]["image_size"] == 64 and remote["data"]["source"] == str(tiny_source)
    assert remote["trainer"]["max_epochs"] == 1
    assert remote["trainer"]["accelerator"] == "cpu" and remote["trainer"]["devices"] == 1
    record = json.loads((tmp_path / "host/output/ranks/rank-0.json").read_text())
    assert record["world_size"] == 1 and record["host"] == "algo-1"


def _two_hosts(code: Path, channel: Path, tmp_path: Path, how: str):
    hosts = ("algo-1", "algo-2")
    port = free_port()
    hps = {**TINY, "data.max_per_split": "16"}
    procs = []
    for rank, host in enumerate(hosts):
        env = host_env(tmp_path / host, channel, hosts, host)
        if how == "torchrun":  # what ModelTrainer's sm_train.sh runs for sagemaker=ddp
            env.update(
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
                SM_ENTRY_SCRIPT="sagemaker_entry.py",
                SM_DISTRIBUTED_CONFIG=json.dumps({"process_count_per_node": None, "smp": None}),
                SM_HPS=json.dumps(hps),
                SM_HOST_COUNT="2",
                SM_MASTER_ADDR="127.0.0.1",
                SM_MASTER_PORT=str(port),
                SM_CURRENT_HOST_RANK=str(rank),
                SM_CURRENT_INSTANCE_TYPE="ml.m5.xlarge",
            )
            cmd = [sys.executable, str(TORCHRUN_DRIVER)]
        else:  # a tuning job's trial: SageMaker runs the script once per host, no torchrun
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
@pytest.mark.parametrize("how", ["torchrun", "bridge"])
def test_two_instances_train_disjoint_shards_to_the_same_weights(code, tiny_source, tmp_path, how):
    first, second = _two_hosts(code, tiny_source, tmp_path, how)
    assert first["world_size"] == second["world_size"] == 2
    assert (first["host"], second["host"]) == ("algo-1", "algo-2")
    shard1, shard2 = set(first["epochs"][0]["ids"]), set(second["epochs"][0]["ids"])
    assert shard1 and shard2 and not shard1 & shard2
    assert len(shard1) == len(shard2) == 8  # 16 training images, half each
    assert first["params_sha256"] == second["params_sha256"]
    assert first["global_step"] == second["global_step"] > 0
    # Only the first host writes the model. (Lightning gives every rank the first rank's
    # checkpoint folder; on one machine the two hosts share it, so each host writing its own copy,
    # MultiHostDDP, is checked in test_bridge_units.py.)
    assert (tmp_path / "algo-1/model/checkpoints/best.ckpt").is_file()
    assert not (tmp_path / "algo-2/model").exists()


def _wait_for_checkpoint(path: Path, proc, timeout=600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its first checkpoint"
        if path.is_file():
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # still being written
                pass
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at {path} after {timeout}s")


@pytest.mark.slow
def test_spot_restart_resumes_at_the_next_epoch(code, tiny_source, tmp_path):
    synced = tmp_path / "opt-ml-checkpoints"  # what SageMaker syncs with the checkpoint S3 URI
    ckpt_dir = synced / "bincount-spot-1"  # one subfolder per job (tuning trials share the URI)
    env = host_env(
        tmp_path / "host",
        tiny_source,
        BINCOUNT_CHECKPOINT_DIR=str(synced),
        TRAINING_JOB_NAME="bincount-spot-1",
    )
    hps = {**TINY, "trainer.max_epochs": "3"}
    cmd = [sys.executable, "sagemaker_entry.py", *args(hps)]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=code, env=env, stdout=log, stderr=log)
        try:
            saved = _wait_for_checkpoint(ckpt_dir / "last.ckpt", first)
        finally:
            first.send_signal(signal.SIGKILL)  # capacity taken back: no warning, no cleanup
            first.wait()
    assert saved["epoch"] == 0
    steps_per_epoch = saved["global_step"]
    assert not (tmp_path / "host/model").exists()

    second = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "resuming from" in log and "Restoring states from the checkpoint" in log
    epochs = [int(e) for e in re.findall(r"epoch (\d+)/3", log)]
    assert epochs == [2, 3]  # epoch 1 is not trained again
    final = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == 2 and final["global_step"] == 3 * steps_per_epoch
    assert (tmp_path / "host/model/checkpoints/best.ckpt").is_file()
