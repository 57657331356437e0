"""A local SageMaker training container made of AWS's own code, without Docker.

It takes the request the launcher really sent (as the moto server on 127.0.0.1 received it),
lays out the container's tree under a temporary root that stands for `/opt/ml`, and runs AWS's
code on it, unmodified but for the path redirections listed below:

- a training job (CreateTrainingJob): the request's ContainerEntrypoint + ContainerArguments,
  i.e. the `sm_train.sh` that sagemaker-train's ModelTrainer generated and uploaded (channel
  `sm_drivers`, downloaded from moto's S3), which runs the SDK's `environment.py`, sources the
  `sm_training.env` it writes, installs the bundle's requirements.txt with the SDK's
  `install_requirements.py`, then `basic_script_driver.py` or `torchrun_driver.py`;
- a tuning-job trial (CreateHyperParameterTuningJob): the PyTorch DLC's own entry, the `train`
  command of `sagemaker-training` with SAGEMAKER_TRAINING_MODULE set to
  `sagemaker_pytorch_container.training:main` (sagemaker-pytorch-training), which downloads
  `sagemaker_submit_directory` from moto's S3, pip-installs its requirements.txt and runs
  `sagemaker_program` with the trial's hyperparameters, `_tuning_objective_metric` included.

Layout under the root (what SageMaker mounts in /opt/ml):
  input/config/hyperparameters.json, resourceconfig.json, inputdataconfig.json,
               tensorboardoutputconfig.json (a job with a TensorBoardOutputConfig)
  input/data/<channel>/  (the data channel: a copy of real images; `code`, `sm_drivers`: the
                          objects of their S3 prefix, downloaded from moto)
  model/, output/, output/data/, checkpoints/ (the request's CheckpointConfig.LocalPath)
  code/ (a trial: where the toolkit extracts the source), tmp/ (the container's own /tmp)

Redirections (the only changes to AWS's code and settings, each listed):
  1. every file of the downloaded `sm_drivers` channel (sm_train.sh, scripts/environment.py,
     common/utils.py, scripts/install_requirements.py, the drivers) and the request's
     ContainerArguments: the text `/opt/ml` replaced by the root (sed), since they hard-code it;
  2. the request's Environment values: `/opt/ml` replaced by the root likewise
     (BINCOUNT_CHECKPOINT_DIR=/opt/ml/checkpoints);
  3. a trial: SAGEMAKER_BASE_DIR=<root>, the toolkit's own setting for a base other than
     /opt/ml, and SM_STUDIO_LOCAL_MODE=true, the toolkit's own switch that skips its wait for
     the DNS names of the hosts (algo-1 does not resolve here);
  4. pip reaches no index: PIP_NO_INDEX=1, PIP_INDEX_URL at a closed port on 127.0.0.1, and
     PIP_CONFIG_FILE=/dev/null (this machine's pip.conf, its mirrors and find-links are not
     read). The pins are checked against this venv (the image's Python here) and nothing is
     downloaded; a missing pin fails the job. Nothing else of the test's environment gets in
     (HF_HUB_OFFLINE and the like stay out, as in a real job): only HOME, LANG, LC_ALL, USER;
  5. PATH starts with this venv's bin (the image's python3/pip/torchrun), or with `image_venv()`'s
     (this venv's torch, torchvision and their dependencies only, as AWS's image ships them: an
     offline bundle's wheels must bring the rest), TMPDIR=<root>/tmp,
     AWS_ENDPOINT_URL and fake credentials send the toolkit's S3 download to moto;
  6. two hosts on one machine: the SDK writes SM_MASTER_ADDR=algo-1 and SM_MASTER_PORT=7777
     into sm_training.env; the harness appends `export SM_MASTER_ADDR=127.0.0.1` and a free
     port to that file (in the copy of sm_train.sh: after `environment.py` writes it, before it
     is sourced), so the hosts meet on 127.0.0.1 with distinct ports per test.

`failure()` reads output/failure (SageMaker's FailureReason); `to_s3()` uploads what SageMaker
would (model.tar.gz, output.tar.gz, the TensorBoard LocalPath) to moto's S3.
`uploads()` then gives what SageMaker would upload: model.tar.gz (the contents of model/),
output.tar.gz (output/data/) and the checkpoint folder (synced to CheckpointConfig.S3Uri).
Usable as a script too: `python tests/sagemaker/container_harness.py REQUESTS_JSON DATA ROOT`
runs the CreateTrainingJob of a (not dry-run) launch's requests.json on the images in DATA, the
`code` and `sm_drivers` channels downloaded from the S3 the launch uploaded them to (boto3's
usual settings; AWS_ENDPOINT_URL for a moto server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OPT_ML = "/opt/ml"
DATA_CHANNEL = "data"
VENV_BIN = Path(sys.executable).parent
PYTORCH_TRAINING_MODULE = "sagemaker_pytorch_container.training:main"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redirect(text: str, root: Path) -> str:
    return text.replace(OPT_ML, str(root))


def _s3_download(s3_uri: str, dest: Path) -> list[str]:
    """Every object under an S3 prefix (from moto) into dest, keeping the relative paths."""
    import boto3

    bucket, _, prefix = s3_uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    got = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :].lstrip("/")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            got.append(rel)
    return got


@dataclass
class Container:
    root: Path
    command: list[str]
    env: dict[str, str]
    cwd: Path
    checkpoint_dir: Path | None = None
    tensorboard_dir: Path | None = None
    log: Path = field(init=False)

    def __post_init__(self):
        self.log = self.root.parent / f"{self.root.name}.log"

    def popen(self) -> subprocess.Popen:
        out = open(self.log, "a")  # noqa: SIM115 (closed by wait())
        proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the whole container
        )
        proc._harness_log = out  # type: ignore[attr-defined]
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float = 600) -> int:
        try:
            return proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc._harness_log.close()  # type: ignore[attr-defined]

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """What a spot interruption does: every process of the container, at once, no warning."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc._harness_log.close()  # type: ignore[attr-defined]

    def fresh_instance(self) -> None:
        """A restarted spot job runs on a new instance: only the checkpoints come back (SageMaker
        syncs them down from CheckpointConfig.S3Uri); model/, output/ and /tmp start empty."""
        for sub in ("model", "output", "tmp"):
            shutil.rmtree(self.root / sub)
        for sub in ("model", "output/data", "tmp"):
            (self.root / sub).mkdir(parents=True)

    def run(self, timeout: float = 600) -> int:
        return self.wait(self.popen(), timeout)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def uploads(self) -> dict[str, Path]:
        """model.tar.gz and output.tar.gz as SageMaker builds them at the end of the job."""
        out = self.root.parent / f"{self.root.name}-uploads"
        out.mkdir(exist_ok=True)
        result = {}
        for name, folder in (
            ("model.tar.gz", self.root / "model"),
            ("output.tar.gz", self.root / "output" / "data"),
        ):
            with tarfile.open(out / name, "w:gz") as tar:
                for path in sorted(folder.rglob("*")):
                    tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
            result[name] = out / name
        if self.checkpoint_dir is not None:
            result["checkpoints"] = self.checkpoint_dir
        return result

    def failure(self) -> str | None:
        """/opt/ml/output/failure: what SageMaker shows as the job's FailureReason."""
        path = self.root / "output" / "failure"
        return path.read_text() if path.is_file() else None

    def to_s3(self, request: dict, job_name: str) -> dict[str, str]:
        """What SageMaker uploads for the job: model.tar.gz and output.tar.gz to
        <S3OutputPath>/<job>/output/ (model.tar.gz only when the job succeeded), and the
        TensorBoard LocalPath to <TensorBoardOutputConfig.S3OutputPath>/<job>/tensorboard-output/
        (SageMaker syncs it during the job; here once, at the end). Returns name -> S3 URI."""
        import boto3

        s3 = boto3.client("s3")
        done = {}
        out = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        failed = self.failure() is not None
        for name, path in self.uploads().items():
            if name == "checkpoints" or (failed and name == "model.tar.gz"):
                continue
            uri = f"{out}/{job_name}/output/{name}"
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            s3.upload_file(str(path), bucket, key)
            done[name] = uri
        tb = request.get("TensorBoardOutputConfig")
        if tb and self.tensorboard_dir is not None and self.tensorboard_dir.is_dir():
            base = f"{tb['S3OutputPath'].rstrip('/')}/{job_name}/tensorboard-output"
            bucket, _, prefix = base.removeprefix("s3://").partition("/")
            for path in sorted(self.tensorboard_dir.rglob("*")):
                if path.is_file():
                    rel = path.relative_to(self.tensorboard_dir).as_posix()
                    s3.upload_file(str(path), bucket, f"{prefix}/{rel}")
                    done[f"tensorboard/{rel}"] = f"s3://{bucket}/{prefix}/{rel}"
        return done


def _tensorboard(request: dict, root: Path) -> Path | None:
    """SageMaker's input/config/tensorboardoutputconfig.json (what smdebug and the bridge
    read) and its LocalPath, for a job created with a TensorBoardOutputConfig."""
    tb = request.get("TensorBoardOutputConfig")
    if not tb:
        return None
    local = Path(_redirect(tb.get("LocalPath", "/opt/ml/output/tensorboard"), root))
    local.mkdir(parents=True, exist_ok=True)
    config = {"LocalPath": str(local), "S3OutputPath": tb["S3OutputPath"]}
    (root / "input" / "config" / "tensorboardoutputconfig.json").write_text(json.dumps(config))
    return local


def _layout(root: Path, hyperparameters: dict, channels: list[dict], resource: dict) -> None:
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for sub in ("model", "output/data", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    data_config = {
        c["ChannelName"]: {
            "TrainingInputMode": c.get("InputMode", "File"),
            "S3DistributionType": c["DataSource"]["S3DataSource"].get(
                "S3DataDistributionType", "FullyReplicated"
            ),
            "RecordWrapperType": "None",
        }
        for c in channels
    }
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))


def resource_config(host: str, hosts: tuple[str, ...], instance_type: str) -> dict:
    """/opt/ml/input/config/resourceconfig.json as SageMaker writes it."""
    return {
        "current_host": host,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": list(hosts),
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": list(hosts),
            }
        ],
        "network_interface_name": "eth0",
    }


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released): connections are refused."""
    return free_port()


def aws_only(env: dict[str, str]) -> dict[str, str]:
    """The AWS settings of an environment (endpoint, credentials, region, the SDK's config)."""
    return {k: v for k, v in env.items() if k.startswith(("AWS_", "SAGEMAKER_"))}


def image_venv(dest: Path) -> Path:
    """A venv standing for AWS's PyTorch image: this Python, pip, and this venv's torch and
    torchvision with their dependencies, linked in from outside it (pip never uninstalls what
    lies outside its environment); returns its bin folder (python3, pip, torchrun)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    dest = Path(dest)
    venv, shipped = dest / "image-venv", dest / "image-site"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    shipped.mkdir(parents=True)
    todo: list[tuple[str, set]] = [("torch", set()), ("torchvision", set()), ("pip", set())]
    seen: dict[str, set] = {}
    while todo:
        name, extras = todo.pop()
        name, extras = name.lower().replace("_", "-"), {"", *extras}
        if name in seen and extras <= seen[name]:
            continue
        first = name not in seen
        seen.setdefault(name, set()).update(extras)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
                todo.append((req.name, set(req.extras)))
        if not first:
            continue
        site = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []}:
            if top != ".." and not (shipped / top).exists() and (site / top).exists():
                (shipped / top).symlink_to(site / top)
    purelib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (purelib / "site-packages" / "image.pth").write_text(f"{shipped}\n")
    for tool, module in (("pip", "pip"), ("pip3", "pip"), ("torchrun", "torch.distributed.run")):
        script = venv / "bin" / tool
        script.write_text(f'#!/bin/sh\nexec "{venv}/bin/python" -m {module} "$@"\n')
        script.chmod(0o755)
    return venv / "bin"


def _base_env(
    root: Path, aws_env: dict[str, str], job_name: str, extra: dict, bin_dir: Path = VENV_BIN
) -> dict[str, str]:
    keep = ("HOME", "LANG", "LC_ALL", "USER")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(aws_env)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        TMPDIR=str(root / "tmp"),
        TRAINING_JOB_NAME=job_name,
        TRAINING_JOB_ARN=f"arn:aws:sagemaker:{aws_env.get('AWS_REGION', 'us-east-1')}:"
        f"123456789012:training-job/{job_name}",
        PYTHONUNBUFFERED="1",  # as the PyTorch DLC's Dockerfile sets it
        PIP_NO_INDEX="1",
        PIP_INDEX_URL=f"http://127.0.0.1:{closed_port()}/simple/",
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    env.update(extra)
    return env


def _manifest_download(s3_uri: str, dest: Path) -> list[str]:
    """A ManifestFile channel in File mode, as SageMaker copies it: each key the manifest lists,
    from its `prefix`, into dest at the key's path relative to that prefix."""
    import boto3

    bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    header, *keys = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    src_bucket, _, prefix = header["prefix"].removeprefix("s3://").partition("/")
    for rel in keys:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(src_bucket, prefix + rel, str(target))
    return keys


def _copy_data(data: Path, root: Path, channel: str = DATA_CHANNEL) -> None:
    dest = root / "input" / "data" / channel
    if not dest.exists():
        shutil.copytree(data, dest)


def _checkpoint_dir(request: dict, root: Path) -> Path | None:
    ckpt = request.get("CheckpointConfig")
    if not ckpt:
        return None
    path = Path(_redirect(ckpt.get("LocalPath", "/opt/ml/checkpoints"), root))
    path.mkdir(parents=True, exist_ok=True)
    return path


def training_job(
    request: dict,
    root: Path,
    data: Path,
    aws_env: dict[str, str],
    *,
    host: str = "algo-1",
    hosts: tuple[str, ...] = ("algo-1",),
    job_name: str = "bincount-local-job",
    master: tuple[str, int] | None = None,
    extra_env: dict | None = None,
    bin_dir: Path = VENV_BIN,
) -> Container:
    """The container of one host of a CreateTrainingJob request, ready to run; `bin_dir`: the
    image's python3 and pip (this venv's, or `image_venv()`'s)."""
    root = Path(root)
    itype = request["ResourceConfig"]["InstanceType"]
    channels = request["InputDataConfig"]
    _layout(root, request.get("HyperParameters", {}), channels, resource_config(host, hosts, itype))
    for channel in channels:
        name = channel["ChannelName"]
        dest = root / "input" / "data" / name
        source = channel["DataSource"]["S3DataSource"]
        if source["S3DataType"] == "ManifestFile":  # only the listed objects, from S3
            _manifest_download(source["S3Uri"], dest)
            continue
        if name == DATA_CHANNEL:
            _copy_data(data, root)
            continue
        _s3_download(source["S3Uri"], dest)
        if name == "sm_drivers":  # redirection 1
            for path in dest.rglob("*"):
                if path.is_file() and path.suffix != ".pyc":  # the SDK uploads its caches too
                    path.write_text(_redirect(path.read_text(), root))
    script = root / "input" / "data" / "sm_drivers" / "sm_train.sh"
    if master is not None:  # redirection 6
        text = script.read_text()
        hook = f"{root}/input/data/sm_drivers/scripts/environment.py\n"
        assert hook in text, "sm_train.sh no longer runs environment.py as expected"
        add = (
            f"echo \"export SM_MASTER_ADDR='{master[0]}'\" >> {root}/input/sm_training.env\n"
            f"echo \"export SM_MASTER_PORT='{master[1]}'\" >> {root}/input/sm_training.env\n"
        )
        script.write_text(text.replace(hook, hook + add, 1))
    algo = request["AlgorithmSpecification"]
    command = [_redirect(a, root) for a in algo["ContainerEntrypoint"]]
    command += [_redirect(a, root) for a in algo.get("ContainerArguments", [])]
    env = {k: _redirect(str(v), root) for k, v in request.get("Environment", {}).items()}
    return Container(
        root=root,
        command=command,
        env=_base_env(root, aws_env, job_name, {**env, **(extra_env or {})}, bin_dir),
        cwd=root,
        checkpoint_dir=_checkpoint_dir(request, root),
        tensorboard_dir=_tensorboard(request, root),
    )


def trial_hyperparameters(tuning_request: dict, tuned: dict[str, str]) -> dict[str, str]:
    """hyperparameters.json of one trial: the static ones, the tuner's picks (strings, as in
    the API) and the objective's name, which SageMaker adds to every trial."""
    definition = tuning_request["TrainingJobDefinition"]
    objective = tuning_request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    return {
        **definition["StaticHyperParameters"],
        **{k: str(v) for k, v in tuned.items()},
        "_tuning_objective_metric": objective["MetricName"],
    }


def tuning_trial(
    tuning_request: dict,
    root: Path,
    data: Path,
    aws_env: dict[str, str],
    tuned: dict[str, str],
    *,
    job_name: str = "bincount-hpo-001-abcd1234",
    extra_env: dict | None = None,
) -> Container:
    """The container of one trial of a CreateHyperParameterTuningJob request (the DLC's toolkit)."""
    root = Path(root)
    definition = tuning_request["TrainingJobDefinition"]
    itype = definition["ResourceConfig"]["InstanceType"]
    channels = definition["InputDataConfig"]
    hps = trial_hyperparameters(tuning_request, tuned)
    _layout(root, hps, channels, resource_config("algo-1", ("algo-1",), itype))
    for channel in channels:
        if channel["ChannelName"] == DATA_CHANNEL:
            _copy_data(data, root)
        else:
            dest = root / "input" / "data" / channel["ChannelName"]
            _s3_download(channel["DataSource"]["S3DataSource"]["S3Uri"], dest)
    env = {k: _redirect(str(v), root) for k, v in definition.get("Environment", {}).items()}
    env.update(
        SAGEMAKER_BASE_DIR=str(root),  # redirection 3
        SM_STUDIO_LOCAL_MODE="true",
        SAGEMAKER_TRAINING_MODULE=PYTORCH_TRAINING_MODULE,  # as the PyTorch DLC's image sets it
        SAGEMAKER_REGION=aws_env.get("AWS_REGION", "us-east-1"),
    )
    return Container(
        root=root,
        command=[str(VENV_BIN / "train")],
        env=_base_env(root, aws_env, job_name, {**env, **(extra_env or {})}),
        cwd=root,
        checkpoint_dir=_checkpoint_dir(definition, root),
    )


def main(argv: list[str]) -> int:
    """python container_harness.py REQUESTS_JSON DATA ROOT: run a launch's training job."""
    requests_json, data, root = argv
    record = json.loads(Path(requests_json).read_text())
    request = record.get("requests", record).get("CreateTrainingJob", record)
    container = training_job(request, Path(root), Path(data), aws_only(dict(os.environ)))
    code = container.run()
    print(container.output()[-4000:])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
