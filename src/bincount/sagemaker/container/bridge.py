"""The container side: SageMaker's `--key value` hyperparameters and SM_* environment -> the
same `bincount.training.runner.train(cfg)` as `python train.py`, then the run folder into
SM_MODEL_DIR.

What SageMaker gives, and what it becomes:
- hyperparameters `--bincount_overrides <JSON> --lr 0.01` -> the overrides in the JSON, then
                                                            `lr=0.01` (a tuned key; see overrides)
- SM_CHANNEL_DATA (the data channel)                     -> `data.source`
- SM_HOSTS, SM_CURRENT_HOST, SM_NUM_GPUS (or torchrun's
  WORLD_SIZE/LOCAL_WORLD_SIZE/GROUP_RANK)                -> trainer.accelerator/devices/num_nodes,
                                                            DDP with gloo (CPU) or nccl (GPU)
- BINCOUNT_CHECKPOINT_DIR (/opt/ml/checkpoints, spot)    -> checkpoints in its subfolder
                                                            TRAINING_JOB_NAME; resume from its
                                                            last.ckpt when the job restarts
- SM_MODEL_DIR                                           <- config.yaml, metrics.json,
                                                            checkpoints/best.ckpt (a run folder)
- SM_OUTPUT_DATA_DIR                                     <- metrics.json, ranks/rank-N.json, the
                                                            trackers' folders (trackers.py)
- SM_INPUT_CONFIG_DIR/tensorboardoutputconfig.json       -> the TensorBoard logger's save_dir
- any error                                              -> SM_OUTPUT_DIR/failure (failure.py)
Without torchrun (a tuning job's trials, or one instance with several GPUs) Lightning starts the
processes of each host itself, meeting at the first host (SM_MASTER_ADDR if set).
This module imports torch only when training starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bincount import rundir
from bincount.errors import BincountError
from bincount.fileio import atomic_copy, atomic_write_json
from bincount.sagemaker.container import failure, trackers
from bincount.sagemaker.launch.channels import (
    CHANNELS_ENV,
    LISTED_ENV,
    WEIGHTS_CHANNEL,
    WEIGHTS_ENV,
)
from bincount.sagemaker.launch.overrides import to_overrides
from bincount.sagemaker.launch.spec import CHECKPOINT_ENV, DATA_CHANNEL, refuse_ensemble

log = logging.getLogger("bincount")
DEFAULT_MASTER_PORT = "29500"
# What sagemaker-train's torchrun_driver.setup_env() sets for NCCL and EFA (its
# container_drivers/common/utils.py lists), so that processes Lightning starts (a tuning trial,
# one host with several GPUs) get the same network settings as those torchrun starts.
EFA_NCCL_INSTANCES = (
    "ml.g4dn.8xlarge",
    "ml.g4dn.12xlarge",
    "ml.g5.48xlarge",
    "ml.p3dn.24xlarge",
    "ml.p4d.24xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
    "ml.trn1.32xlarge",
)
EFA_RDMA_INSTANCES = (
    "ml.p4d.24xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
    "ml.trn1.32xlarge",
)


def collective_env(env: Mapping[str, str]) -> dict[str, str]:
    """The NCCL/EFA variables AWS's torchrun driver sets, for this instance type."""
    instance = env.get("SM_CURRENT_INSTANCE_TYPE", "")
    out: dict[str, str] = {}
    if instance in EFA_NCCL_INSTANCES:
        out["FI_PROVIDER"] = "efa"
    if instance in EFA_RDMA_INSTANCES:
        out["FI_EFA_USE_DEVICE_RDMA"] = "1"
        out["RDMAV_FORK_SAFE"] = "1"
    out["NCCL_SOCKET_IFNAME"] = str(env.get("SM_NETWORK_INTERFACE_NAME", "eth0"))
    out["NCCL_PROTO"] = "simple"
    return out


def is_sagemaker_key(key: str) -> bool:
    """Keys SageMaker and its toolkits add to a job's hyperparameters: `sagemaker_program`,
    `sagemaker_submit_directory`, `sagemaker_region`, ... and `_tuning_objective_metric` (every
    trial of a tuning job); none is a training setting."""
    return key.startswith(("sagemaker_", "_"))


def parse_hyperparameters(argv: list[str]) -> dict[str, str]:
    """`--key value` pairs (as SageMaker passes hyperparameters) -> {key: value}.

    SageMaker's own keys are dropped (`is_sagemaker_key`). "None" (how SageMaker's legacy
    toolkit writes a JSON null) becomes "null".
    """
    out: dict[str, str] = {}
    args = list(argv)
    while args:
        flag = args.pop(0)
        if not flag.startswith("--") or len(flag) < 3:
            raise BincountError(
                f"unexpected argument {flag!r}: the entrypoint takes `--key value` pairs "
                "(the job's hyperparameters)"
            )
        if not args:
            raise BincountError(f"hyperparameter {flag} has no value")
        key, value = flag[2:], args.pop(0)
        if is_sagemaker_key(key):
            continue
        out[key] = "null" if value == "None" else value
    return out


@dataclass(frozen=True)
class Topology:
    hosts: tuple[str, ...]
    node_rank: int
    num_nodes: int
    devices: int  # processes per host
    accelerator: str  # cpu | gpu
    torchrun: bool  # processes started by torchrun (else Lightning starts them)

    @property
    def world_size(self) -> int:
        return self.num_nodes * self.devices

    @property
    def backend(self) -> str:
        return "nccl" if self.accelerator == "gpu" else "gloo"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Topology:
        current = env.get("SM_CURRENT_HOST", "")
        hosts = tuple(json.loads(env.get("SM_HOSTS") or "[]")) or ((current or "algo-1"),)
        current = current or hosts[0]
        if current not in hosts:
            raise BincountError(f"SM_CURRENT_HOST={current} is not one of SM_HOSTS={list(hosts)}")
        gpus = int(env.get("SM_NUM_GPUS") or 0)
        accelerator = "gpu" if gpus > 0 else "cpu"
        if "TORCHELASTIC_RUN_ID" in env and "LOCAL_WORLD_SIZE" in env:
            local = int(env["LOCAL_WORLD_SIZE"])
            return cls(
                hosts=hosts,
                node_rank=int(env.get("GROUP_RANK", hosts.index(current))),
                num_nodes=max(1, int(env["WORLD_SIZE"]) // local),
                devices=local,
                accelerator=accelerator,
                torchrun=True,
            )
        return cls(
            hosts=hosts,
            node_rank=hosts.index(current),
            num_nodes=len(hosts),
            devices=max(gpus, 1),
            accelerator=accelerator,
            torchrun=False,
        )

    def trainer_settings(self) -> dict:
        settings: dict = {
            "trainer.accelerator": self.accelerator,
            "trainer.devices": self.devices,
            "trainer.num_nodes": self.num_nodes,
        }
        if self.world_size > 1:
            strategy = "MultiHostDDP" if self.num_nodes > 1 else "DDPStrategy"
            module = (
                "bincount.sagemaker.container.multihost"
                if self.num_nodes > 1
                else "pytorch_lightning.strategies"
            )
            settings["trainer.strategy"] = {
                "_target_": f"{module}.{strategy}",
                "process_group_backend": self.backend,
            }
            # BatchNorm statistics over all GPUs (PyTorch's SyncBatchNorm is GPU-only).
            settings["trainer.sync_batchnorm"] = self.accelerator == "gpu"
        else:
            settings["trainer.strategy"] = "auto"
        return settings

    def launch_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """Where Lightning's processes meet, when torchrun did not set it up, and the NCCL/EFA
        settings torchrun's driver would have made (GPU only; torchrun's path has them)."""
        if self.torchrun or self.world_size == 1:
            return {}
        out = {
            "MASTER_ADDR": env.get("SM_MASTER_ADDR") or self.hosts[0],
            "MASTER_PORT": str(env.get("SM_MASTER_PORT") or DEFAULT_MASTER_PORT),
            "NODE_RANK": str(self.node_rank),
        }
        if self.accelerator == "gpu":
            out.update({k: v for k, v in collective_env(env).items() if k not in env})
        return out

    def global_rank(self, env: Mapping[str, str]) -> int:
        if "RANK" in env:
            return int(env["RANK"])
        return self.node_rank * self.devices + int(env.get("LOCAL_RANK", 0))


@dataclass(frozen=True)
class Places:
    run_dir: Path
    data_dir: Path
    checkpoint_dir: Path
    model_dir: Path | None
    output_data_dir: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Places:
        scratch = Path(env.get("BINCOUNT_SCRATCH") or Path(tempfile.gettempdir()) / "bincount")
        run_dir = scratch / "run"
        ckpt = env.get(CHECKPOINT_ENV)
        job = env.get("TRAINING_JOB_NAME", "")
        if ckpt and re.fullmatch(r"[A-Za-z0-9-]+", job):
            # One subfolder per job: the trials of a tuning job share one checkpoint S3 URI.
            ckpt = str(Path(ckpt) / job)
        model = env.get("SM_MODEL_DIR")
        output = env.get("SM_OUTPUT_DATA_DIR")
        return cls(
            run_dir=run_dir,
            data_dir=scratch / "data",
            checkpoint_dir=Path(ckpt) if ckpt else rundir.checkpoint_dir(run_dir),
            model_dir=Path(model) if model else None,
            output_data_dir=Path(output) if output else None,
        )


def job_overrides(hyperparameters: dict[str, str], env: Mapping[str, str], places: Places):
    """The overrides of the job's config: the user's, then where things are in the container."""
    overrides = to_overrides(hyperparameters)
    channel = env.get(f"SM_CHANNEL_{DATA_CHANNEL.upper()}")
    if env.get(CHANNELS_ENV):
        overrides.append(f"data.source={data_sources(env)}")
    elif channel:
        overrides.append(f"data.source={channel}")
    if env.get(LISTED_ENV) == "1":  # a manifest channel: it holds just the listed photos
        overrides.append("data.file_list=null")
    elif not any(o.startswith("data.source=") for o in overrides):
        raise BincountError(
            f"no SM_CHANNEL_{DATA_CHANNEL.upper()}: the job needs a `{DATA_CHANNEL}` input "
            "channel with the images (bin-images/, metadata/)"
        )
    weights = env.get(f"SM_CHANNEL_{WEIGHTS_CHANNEL.upper()}")
    if weights and env.get(WEIGHTS_ENV):
        overrides.append(f"model.net.weights={Path(weights) / env[WEIGHTS_ENV]}")
    overrides += [
        f"paths.data_dir={places.data_dir}",
        f"paths.log_dir={places.run_dir.parent}",
        f"callbacks.model_checkpoint.dirpath={places.checkpoint_dir}",
    ]
    last = resumable(places.checkpoint_dir, env.get("TRAINING_JOB_NAME"))
    if last is not None and not any(o.lstrip("+").startswith("ckpt_path=") for o in overrides):
        log.info("resuming from %s (the job was restarted)", last)
        overrides.append(f"ckpt_path={last}")
    return overrides


def data_sources(env: Mapping[str, str]) -> str:
    """data.source as a Hydra list of the job's data channels (BINCOUNT_DATA_CHANNELS: each
    channel's name and whether its photos are squashed copies)."""
    items = []
    for entry in json.loads(env[CHANNELS_ENV]):
        key = f"SM_CHANNEL_{entry['channel'].upper()}"
        if not env.get(key):
            raise BincountError(
                f"no {key}: the job lists the channel {entry['channel']} in {CHANNELS_ENV} "
                "but SageMaker did not mount it (launch again with launch_sagemaker.py)"
            )
        path = f"'{env[key]}'"
        items.append(f"{{path:{path},squashed:true}}" if entry.get("squashed") else path)
    return f"[{','.join(items)}]"


def resumable(checkpoint_dir: Path, job_name: str | None) -> Path | None:
    """last.ckpt of this same job (a spot restart keeps the job's name), else None.

    The checkpoint folder is marked with the job's name, so a job never resumes from another
    job's checkpoints (tuning trials, or a reused sagemaker.checkpoint_s3_uri).
    """
    mark = checkpoint_dir / "job.json"
    last = checkpoint_dir / rundir.LAST
    owner = json.loads(mark.read_text()).get("job") if mark.is_file() else None
    if last.is_file() and mark.is_file() and owner == job_name:
        return last
    if last.is_file():
        log.warning("%s belongs to job %s, not %s: starting afresh", last, owner, job_name)
    atomic_write_json(mark, {"job": job_name})
    return None


def file_list(setting: str | None, channel: Path) -> str | None:
    """data.file_list in the container: as set, else the channel's, else the seed's list.

    `data=bucket` names `file_list.json`, which a local cache of the bucket holds; a channel of
    the public bucket itself has none, so the seed's list shipped in the package stands in (as
    bincount.data.s3 does for a cache).
    """
    if not setting or Path(setting).is_absolute() or Path(setting).exists():
        return setting
    if (channel / setting).exists() or Path(setting).name != "file_list.json":
        return setting
    from importlib import resources

    seed = resources.files("bincount").joinpath("resources/file_list.json")
    log.info("no %s in the data channel: using the seed's list %s", setting, seed)
    return str(seed)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bincount.config import config_dir

    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return hydra_compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise BincountError(f"the job's hyperparameters do not compose a config: {e}") from None


def build_config(argv: list[str], env: Mapping[str, str]):
    from omegaconf import OmegaConf, open_dict

    hyperparameters = parse_hyperparameters(argv)
    topology = Topology.from_env(env)
    places = Places.from_env(env)
    cfg = compose(job_overrides(hyperparameters, env, places))
    refuse_ensemble(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(places.run_dir)
        cfg.data.file_list = file_list(cfg.data.get("file_list"), Path(str(cfg.data.source)))
        for key, value in topology.trainer_settings().items():
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        trackers.point_tensorboard(cfg, trackers.tensorboard_local_path(env))
        if places.output_data_dir is not None and cfg.get("callbacks") is not None:
            cfg.callbacks.rank_record = {
                "_target_": "bincount.sagemaker.container.rank_record.RankRecord",
                "out_dir": str(places.output_data_dir / "ranks"),
                "host": topology.hosts[topology.node_rank],
            }
    return cfg, topology, places


def export_model(places: Places) -> Path | None:
    """The run folder the serving side loads: config.yaml, metrics.json, checkpoints/best.ckpt."""
    if places.model_dir is None:
        return None
    run, model = places.run_dir, places.model_dir
    metrics = rundir.read_metrics(run)
    if metrics is None:
        raise BincountError(f"{rundir.metrics_path(run)} is missing: the training did not finish")
    best = places.checkpoint_dir / rundir.BEST
    if not best.is_file():
        log.warning("no best.ckpt (no validation?): exporting the last checkpoint as best")
        best = places.checkpoint_dir / rundir.LAST
    if not best.is_file():
        raise BincountError(f"no checkpoint in {places.checkpoint_dir}: nothing to export")
    atomic_copy(best, rundir.best_checkpoint(model))
    shutil.copyfile(rundir.config_path(run), rundir.config_path(model))
    metrics["best_checkpoint"] = rundir.BEST_CKPT
    rundir.write_metrics(model, metrics)
    if (run / rundir.CSV_METRICS).is_file():
        (model / rundir.CSV_METRICS).parent.mkdir(exist_ok=True)
        shutil.copyfile(run / rundir.CSV_METRICS, model / rundir.CSV_METRICS)
    if places.output_data_dir is not None:
        rundir.write_metrics(places.output_data_dir, metrics)
    copy_debug_files(run, places.output_data_dir or model)
    return model


# What the health rules, the profiler and the report callback leave in the run folder.
DEBUG_FILES = (rundir.HEALTH, rundir.PROFILE, "report.html")


def copy_debug_files(run: Path, dest: Path) -> list[Path]:
    """Carry the run's debugging outputs to where SageMaker uploads them (output.tar.gz)."""
    return [atomic_copy(run / name, dest / name) for name in DEBUG_FILES if (run / name).is_file()]


def run(argv: list[str], env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    cfg, topology, places = build_config(argv, env)
    os.environ.update(topology.launch_env(env))
    per_process = int(cfg.data.batch_size)
    log.info(
        "effective batch size %d = %d per process x %d process(es)",
        per_process * topology.world_size,
        per_process,
        topology.world_size,
    )
    log.info(
        "host %s (%d of %d), %d process(es) per host on %s, world size %d",
        topology.hosts[topology.node_rank],
        topology.node_rank + 1,
        topology.num_nodes,
        topology.devices,
        topology.accelerator,
        topology.world_size,
    )
    from bincount.training.runner import train

    objective = train(cfg)
    if topology.global_rank(os.environ) == 0:
        # The last `<metric>=` line of the log is what a tuning job scores the trial by.
        print(f"best {cfg.optimized_metric}={objective:.6f}", flush=True)
        model = export_model(places)
        if model is not None:
            log.info("model saved to %s", model)
        trackers.pack(cfg, places.run_dir, places.output_data_dir or model)
    return objective


def user_overrides(argv: list[str]) -> list[str]:
    """The job's own overrides (no container paths), for naming the one that broke it."""
    try:
        return to_overrides(parse_hyperparameters(argv))
    except Exception:  # a malformed argv: its own error says so
        return []


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except BincountError as e:
        print(f"error: {e}", file=sys.stderr)
        failure.write(e, user_overrides(argv), os.environ)
        return 2
    except Exception as e:  # any other error: the traceback in the log, its gist in the record
        traceback.print_exc()
        written = failure.write(e, user_overrides(argv), os.environ)
        if written is not None:
            print(f"failure reason ({written}):\n{written.read_text()}", file=sys.stderr)
        return 1
    return 0
