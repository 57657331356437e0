"""The container bridge's pieces: hyperparameters, topology, trainer settings, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bincount.errors import BincountError
from bincount.sagemaker.container.bridge import (
    Places,
    Topology,
    collective_env,
    file_list,
    job_overrides,
    parse_hyperparameters,
)
from bincount.sagemaker.launch.overrides import (
    OVERRIDES_KEY,
    decode,
    split,
    to_overrides,
    tuned_name,
)


def test_hyperparameters_round_trip_to_the_same_overrides():
    cli = [
        "model=resnet50",
        "lr=0.01",
        "+data.extra=[1,2]",
        "~callbacks.lr_monitor",
        "x='a b'",
        '+y="it\'s = \\"q\\""',
    ]
    hps = split([*cli, "sagemaker.spot=true", "+sweep=hpo", "dry_run=true", "data.source=/d"])
    assert hps.training == cli
    assert hps.launcher == ["sagemaker.spot=true", "+sweep=hpo", "dry_run=true", "data.source=/d"]
    [(name, value)] = hps.hyperparameters().items()
    assert name == OVERRIDES_KEY
    assert "'" not in value  # shell-safe once AWS's code decodes it and writes `export ...='...'`
    # As each reader passes it on (JSON-decoded once, as sagemaker-train's drivers and the
    # sagemaker-training toolkit do), and as it is sent (not decoded): the same overrides.
    for passed in (json.loads(value), value):
        argv = ["--" + name, passed, "--sagemaker_program", "sagemaker_entry.py"]
        argv += ["--_tuning_objective_metric", "val/acc", "--lr", "0.02"]
        assert to_overrides(parse_hyperparameters(argv)) == [*cli, "lr=0.02"]


def test_tuned_keys_travel_under_shell_safe_names():
    assert tuned_name("lr") == "lr" and tuned_name("data.image_size") == "data__image_size"
    assert to_overrides({"data__image_size": "96"}) == ["data.image_size=96"]
    with pytest.raises(BincountError, match="a tuned key must be"):
        tuned_name("+weird-key")
    hps = split(["lr=0.5", "model=resnet18"]).hyperparameters(drop_keys={"lr"})
    assert decode(hps[OVERRIDES_KEY]) == ["model=resnet18"]  # tuned wins
    with pytest.raises(BincountError, match="not a JSON list of overrides"):
        decode('{"a": 1}')


def test_sweeps_and_bad_arguments_are_refused():
    with pytest.raises(BincountError, match=r"\+sweep=hpo"):
        split(["lr=0.1,0.01"])
    with pytest.raises(BincountError, match="`--key value` pairs"):
        parse_hyperparameters(["lr=0.1"])
    with pytest.raises(BincountError, match="has no value"):
        parse_hyperparameters(["--lr"])
    assert parse_hyperparameters(["--ckpt_path", "None"]) == {"ckpt_path": "null"}


def test_two_cpu_hosts_without_torchrun_meet_at_the_first():
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "0"}
    top = Topology.from_env(env)
    assert (top.num_nodes, top.devices, top.node_rank, top.world_size) == (2, 1, 1, 2)
    settings = top.trainer_settings()
    assert settings["trainer.strategy"]["process_group_backend"] == "gloo"
    assert settings["trainer.strategy"]["_target_"].endswith("multihost.MultiHostDDP")
    assert settings["trainer.accelerator"] == "cpu" and settings["trainer.num_nodes"] == 2
    assert settings["trainer.sync_batchnorm"] is False  # SyncBatchNorm is GPU-only
    assert top.launch_env(env) == {
        "MASTER_ADDR": "algo-1",
        "MASTER_PORT": "29500",
        "NODE_RANK": "1",
    }
    assert top.global_rank({"LOCAL_RANK": "0"}) == 1


def test_gpu_hosts_under_torchrun_use_nccl_and_torchruns_ranks():
    env = {
        "SM_HOSTS": '["algo-1", "algo-2"]',
        "SM_CURRENT_HOST": "algo-2",
        "SM_NUM_GPUS": "4",
        "TORCHELASTIC_RUN_ID": "x",
        "WORLD_SIZE": "8",
        "LOCAL_WORLD_SIZE": "4",
        "GROUP_RANK": "1",
        "RANK": "5",
    }
    top = Topology.from_env(env)
    assert (top.num_nodes, top.devices, top.torchrun) == (2, 4, True)
    assert top.trainer_settings()["trainer.strategy"]["process_group_backend"] == "nccl"
    assert top.trainer_settings()["trainer.sync_batchnorm"] is True
    assert top.launch_env(env) == {}  # torchrun set up the rendezvous
    assert top.global_rank(env) == 5


def test_one_cpu_host_trains_as_locally():
    top = Topology.from_env({})
    assert top.world_size == 1 and top.trainer_settings()["trainer.strategy"] == "auto"
    with pytest.raises(BincountError, match="not one of SM_HOSTS"):
        Topology.from_env({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-9"})


def test_data_channel_and_places_become_overrides(tmp_path):
    env = {
        "SM_CHANNEL_DATA": "/opt/ml/input/data/data",
        "BINCOUNT_SCRATCH": str(tmp_path / "scratch"),
        "BINCOUNT_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
    }
    places = Places.from_env(env)
    overrides = job_overrides({"lr": "0.01"}, env, places)
    assert overrides[0] == "lr=0.01"
    assert "data.source=/opt/ml/input/data/data" in overrides
    assert f"callbacks.model_checkpoint.dirpath={tmp_path / 'ckpt'}" in overrides
    assert not [o for o in overrides if o.startswith("ckpt_path=")]
    with pytest.raises(BincountError, match="SM_CHANNEL_DATA"):
        job_overrides({}, {}, places)


def test_a_restarted_job_resumes_only_from_its_own_checkpoints(tmp_path):
    env = {
        "SM_CHANNEL_DATA": "/d",
        "BINCOUNT_CHECKPOINT_DIR": str(tmp_path),
        "TRAINING_JOB_NAME": "a",
    }
    places = Places.from_env(env)
    assert places.checkpoint_dir == tmp_path / "a"  # one subfolder per job
    places = Places(places.run_dir, places.data_dir, tmp_path, None, None)
    job_overrides({}, env, places)  # first start marks the folder as job a's
    assert json.loads((tmp_path / "job.json").read_text()) == {"job": "a"}
    (tmp_path / "last.ckpt").write_bytes(b"x")
    assert f"ckpt_path={tmp_path / 'last.ckpt'}" in job_overrides({}, env, places)
    other = {**env, "TRAINING_JOB_NAME": "b"}  # e.g. another trial of a tuning job
    assert not [o for o in job_overrides({}, other, places) if o.startswith("ckpt_path=")]


def test_a_channel_of_the_public_bucket_uses_the_seeds_file_list(tmp_path):
    seed = file_list("file_list.json", tmp_path)  # the bucket itself has no file_list.json
    assert seed.endswith("resources/file_list.json") and json.loads(Path(seed).read_text())
    (tmp_path / "file_list.json").write_text("{}")  # an uploaded folder brings its own
    assert file_list("file_list.json", tmp_path) == "file_list.json"
    assert file_list(None, tmp_path) is None
    assert file_list("/abs/list.json", tmp_path) == "/abs/list.json"


def test_every_host_writes_its_own_checkpoints(tmp_path, monkeypatch):
    from lightning_fabric.plugins.environments import LightningEnvironment
    from lightning_fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero
    from lightning_utilities.core.rank_zero import rank_zero_only
    from pytorch_lightning.strategies import DDPStrategy

    from bincount.sagemaker.container.multihost import MultiHostDDP

    # set_global_rank() sets Lightning's process-wide rank: put it back afterwards, or every
    # later test in this process would see rank 1 and its loggers would write nothing.
    for fn in {id(f): f for f in (rank_zero_only, fabric_rank_zero)}.values():
        monkeypatch.setattr(fn, "rank", getattr(fn, "rank", 0))

    def second_host_saves(strategy_class) -> bool:
        env = LightningEnvironment()  # the first process of the second host: global rank 1
        env.set_global_rank(1)
        env.set_world_size(2)
        strategy = strategy_class(cluster_environment=env)
        assert (strategy.global_rank, strategy.local_rank) == (1, 0)
        path = tmp_path / f"{strategy_class.__name__}.ckpt"
        strategy.save_checkpoint({"epoch": 0}, path)
        return path.is_file()

    assert second_host_saves(MultiHostDDP)
    assert not second_host_saves(DDPStrategy)  # Lightning's: the first process only


def test_export_carries_the_debug_files_to_the_output_data(tmp_path):
    from bincount.sagemaker.container.bridge import Places, export_model

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (run / "config.yaml").write_text("lr: 0.01\n")
    (run / "metrics.json").write_text(json.dumps({"val/acc": 0.5}))
    (run / "health.json").write_text('{"rules": []}')
    (run / "report.html").write_text("<html></html>")
    places = Places(
        run, tmp_path / "data", run / "checkpoints", tmp_path / "model", tmp_path / "out"
    )
    model = export_model(places)
    assert (model / "checkpoints" / "best.ckpt").read_bytes() == b"weights"
    assert (tmp_path / "out" / "health.json").read_text() == '{"rules": []}'
    assert (tmp_path / "out" / "report.html").is_file()
    assert not (tmp_path / "out" / "profile.json").exists()  # no profiler ran: nothing made up
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_an_ensemble_is_refused_before_anything_trains(tmp_path):
    from bincount.sagemaker.container.bridge import build_config

    env = {
        "SM_CHANNEL_DATA": str(tmp_path / "data"),
        "BINCOUNT_SCRATCH": str(tmp_path / "scratch"),
        "BINCOUNT_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
    }
    with pytest.raises(BincountError, match="experiment=best_single"):
        build_config(["--experiment", "ensemble"], env)
    cfg, _, _ = build_config(["--experiment", "best_single"], env)
    assert cfg.model.net.head == "ordinal" and cfg.runner._target_ == "bincount.training.fit.run"


def test_a_list_of_sources_and_the_weights_channel_become_overrides(tmp_path):
    """The launcher's BINCOUNT_DATA_CHANNELS (one channel per data.source element) and
    BINCOUNT_WEIGHTS_FILE (model.net.weights as a channel) back into the config."""
    from bincount.sagemaker.container.bridge import compose

    env = {
        "SM_CHANNEL_DATA": "/opt/ml/input/data/data",
        "SM_CHANNEL_DATA1": "/opt/ml/input/data/data1",
        "SM_CHANNEL_WEIGHTS": "/opt/ml/input/data/weights",
        "BINCOUNT_DATA_CHANNELS": json.dumps(
            [{"channel": "data", "squashed": False}, {"channel": "data1", "squashed": True}]
        ),
        "BINCOUNT_WEIGHTS_FILE": "r50.pth",
        "BINCOUNT_SCRATCH": str(tmp_path),
    }
    hps = {
        OVERRIDES_KEY: split(["model.net.weights=/home/me/r50.pth"]).hyperparameters()[
            OVERRIDES_KEY
        ]
    }
    overrides = job_overrides(hps, env, Places.from_env(env))
    cfg = compose(overrides)
    assert list(cfg.data.source) == [
        "/opt/ml/input/data/data",
        {"path": "/opt/ml/input/data/data1", "squashed": True},
    ]
    assert cfg.model.net.weights == "/opt/ml/input/data/weights/r50.pth"  # the channel's, not local
    del env["SM_CHANNEL_DATA1"]
    with pytest.raises(BincountError, match="SM_CHANNEL_DATA1"):
        job_overrides({}, env, Places.from_env(env))


AWS_DRIVER = """
import json, os, sys
from sagemaker.train.container_drivers.distributed_drivers import torchrun_driver
before = dict(os.environ)
torchrun_driver.setup_env()
print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))
"""


@pytest.mark.parametrize(
    "instance", ["ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.g5.48xlarge", "ml.g5.xlarge"]
)
def test_trials_get_the_nccl_and_efa_settings_of_aws_torchrun_driver(instance):
    """What AWS's own torchrun_driver.setup_env() (sagemaker-train) sets, run in a fresh
    interpreter, equals what the bridge gives the processes Lightning starts."""
    import os
    import subprocess
    import sys

    for extra in ({}, {"SM_NETWORK_INTERFACE_NAME": "ens5"}):
        env = {"SM_CURRENT_INSTANCE_TYPE": instance, **extra}
        proc = subprocess.run(
            [sys.executable, "-c", AWS_DRIVER],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert collective_env(env) == json.loads(proc.stdout)
    if instance == "ml.p4d.24xlarge":
        assert collective_env(env)["FI_PROVIDER"] == "efa"
    # The bridge sets them for a multi-GPU trial (no torchrun); not on CPU, not under torchrun.
    hosts = {"SM_HOSTS": '["algo-1","algo-2"]', "SM_CURRENT_HOST": "algo-2"}
    gpu = {**hosts, "SM_NUM_GPUS": "8", "SM_CURRENT_INSTANCE_TYPE": instance}
    launch = Topology.from_env(gpu).launch_env(gpu)
    assert {k: launch[k] for k in collective_env(gpu)} == collective_env(gpu)
    assert "NCCL_PROTO" not in Topology.from_env(hosts).launch_env(hosts)


def test_the_model_hub_message_names_the_fix_that_works_inside_a_job():
    from bincount.models.backbones import _no_weights

    inside = str(
        _no_weights("resnet50", "the model hub cannot be reached", {"TRAINING_JOB_NAME": "j"})
    )
    assert "model.net.weights=s3://" in inside and "NAT gateway" in inside
    assert "run where the model hub is reachable" not in inside
    here = str(_no_weights("resnet50", "the model hub cannot be reached", {}))
    assert "run where the model hub is reachable" in here and "SageMaker" not in here
