"""`bincount pull JOB`: a training or tuning job's trials, from SageMaker's own records, into
local run folders.

The records: DescribeHyperParameterTuningJob (objective, best trial),
ListTrainingJobsForHyperParameterTuningJob (each trial's status, tuned values, objective value,
failure reason), DescribeTrainingJob (hyperparameters, final metrics, failure reason, where its
artifacts and TensorBoard events are). The files: each trial's model.tar.gz (config.yaml,
metrics.json, checkpoints/best.ckpt: what `evaluate` and `serve` load) and output.tar.gz
(metrics.json, the trackers' folders: tensorboard/, wandb/, mlflow/), unpacked into one run
folder per trial, plus the TensorBoard events SageMaker streamed to the job's TensorBoard S3
prefix when the archives hold none (a job that failed before packing them). Every folder gets
`sagemaker.json`, the trial's record. boto3 only (no SDK, no torch).
"""

from __future__ import annotations

import json
import shlex
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bincount import rundir
from bincount.errors import BincountError
from bincount.fileio import atomic_write_json
from bincount.sagemaker.launch.overrides import to_overrides

RECORD = "sagemaker.json"  # in each run folder: the trial's SageMaker record
SUMMARY = "pull.json"  # in a tuning job's folder: every trial and the best
TENSORBOARD_OUTPUT = "tensorboard-output"  # SageMaker's folder under <S3OutputPath>/<job>/
ARCHIVES = ("model.tar.gz", "output.tar.gz")
DATA_CHANNEL = "data"


@dataclass
class Trial:
    name: str
    status: str
    objective: float | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None
    tuned: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, str] = field(default_factory=dict)
    model_uri: str | None = None
    output_uri: str | None = None
    tensorboard_uri: str | None = None
    data_uri: str | None = None
    folder: str | None = None
    files: list[str] = field(default_factory=list)
    tensorboard_events: list[str] = field(default_factory=list)

    def overrides(self) -> list[str]:
        """The training overrides the trial ran with (its hyperparameters, SageMaker's own
        keys dropped; tuned values last, as the container applies them)."""
        own = {
            k: v for k, v in self.hyperparameters.items() if not k.startswith(("sagemaker_", "_"))
        }
        return to_overrides(own)

    def reproduce(self) -> str:
        """The local command of this trial (its data from the job's S3 channel)."""
        extra = [f"data.source={self.data_uri}"] if self.data_uri else []
        return " ".join(["python train.py", *map(shlex.quote, self.overrides() + extra)])


@dataclass
class Pulled:
    kind: str  # "tuning job" | "training job"
    name: str
    status: str
    metric: str | None
    direction: str  # Maximize | Minimize
    trials: list[Trial]
    best: Trial | None
    dest: Path


def _error(e, what: str) -> BincountError:
    err = getattr(e, "response", {}).get("Error", {})
    text = f"{err.get('Code')}: {err.get('Message')}" if err else str(e)
    return BincountError(f"{what} failed: {text} (check the name, the region and credentials)")


def clients(region: str):
    import boto3

    return boto3.client("sagemaker", region_name=region), boto3.client("s3", region_name=region)


def _not_found(e) -> bool:
    err = getattr(e, "response", {}).get("Error", {})
    return err.get("Code") in ("ResourceNotFound", "ValidationException") or "not find" in str(
        err.get("Message", "")
    )


def _s3_join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p)


def trial_from_description(d: dict) -> Trial:
    name = d["TrainingJobName"]
    out = d.get("OutputDataConfig", {}).get("S3OutputPath", "")
    tb = (d.get("TensorBoardOutputConfig") or {}).get("S3OutputPath")
    data = [
        c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in d.get("InputDataConfig", [])
        if c.get("ChannelName") == DATA_CHANNEL and "S3DataSource" in c.get("DataSource", {})
    ]
    return Trial(
        name=name,
        status=d.get("TrainingJobStatus", "Unknown"),
        final_metrics={m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])},
        failure_reason=d.get("FailureReason") or None,
        hyperparameters=dict(d.get("HyperParameters", {})),
        model_uri=(d.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        output_uri=_s3_join(out, name, "output", "output.tar.gz") if out else None,
        tensorboard_uri=_s3_join(tb, name) + "/" if tb else None,
        data_uri=data[0] if data else None,
    )


def _tuning_summaries(sm, name: str) -> list[dict]:
    pages = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=name
    )
    return [s for page in pages for s in page.get("TrainingJobSummaries", [])]


def records(sm, name: str) -> tuple[str, dict, list[Trial]]:
    """(kind, the job's description, its trials) from SageMaker's API."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as e:
        if not _not_found(e):
            raise _error(e, "DescribeHyperParameterTuningJob") from None
        tuning = None
    except BotoCoreError as e:
        raise _error(e, "DescribeHyperParameterTuningJob") from None
    try:
        if tuning is None:
            try:
                described = sm.describe_training_job(TrainingJobName=name)
            except ClientError as e:
                if _not_found(e):
                    raise BincountError(
                        f"no training or tuning job named {name} in {sm.meta.region_name}: "
                        "check the name (the launcher prints it) and the region (--region)"
                    ) from None
                raise
            trial = trial_from_description(described)
            return "training job", described, [trial]
        trials = []
        for summary in _tuning_summaries(sm, name):
            trial = trial_from_description(
                sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            )
            final = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
            trial.objective = final.get("Value")
            trial.tuned = dict(summary.get("TunedHyperParameters", {}))
            trial.failure_reason = trial.failure_reason or summary.get("FailureReason") or None
            trial.status = summary.get("TrainingJobStatus", trial.status)
            trials.append(trial)
        return "tuning job", tuning, trials
    except ClientError as e:
        raise _error(e, "reading the job's records") from None
    except BotoCoreError as e:
        raise _error(e, "reading the job's records") from None


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _exists(s3, uri: str) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = _split(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def _unpack(s3, uri: str, folder: Path) -> list[str]:
    bucket, key = _split(uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "archive.tar.gz"
        s3.download_file(bucket, key, str(local))
        with tarfile.open(local) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
            tar.extractall(folder, filter="data")  # no absolute paths, links or `..`
    return names


def _tensorboard_events(s3, trial: Trial, folder: Path, download: bool) -> list[str]:
    """The event files SageMaker streamed under the trial's TensorBoard S3 prefix (their URIs);
    with `download`, copied into the run folder (`tensorboard-output/x` -> `<run>/x`)."""
    if not trial.tensorboard_uri:
        return []
    bucket, prefix = _split(trial.tensorboard_uri)
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if "tfevents" not in key.rsplit("/", 1)[-1]:
                continue
            found.append(f"s3://{bucket}/{key}")
            if download:
                rel = key[len(prefix) :].lstrip("/")
                rel = rel.split(f"{TENSORBOARD_OUTPUT}/", 1)[-1]
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target))
    return found


def download(s3, trial: Trial, folder: Path) -> None:
    """The trial's artifacts into `folder` (a run folder when the trial finished)."""
    folder.mkdir(parents=True, exist_ok=True)
    trial.folder = str(folder)
    for uri in (trial.model_uri, trial.output_uri):
        if uri and _exists(s3, uri):
            trial.files += _unpack(s3, uri, folder)
    has_tensorboard = any(p.name.startswith("events.out.tfevents") for p in folder.rglob("*"))
    trial.tensorboard_events = _tensorboard_events(s3, trial, folder, not has_tensorboard)
    atomic_write_json(folder / RECORD, {k: v for k, v in asdict(trial).items() if k != "files"})


def _objective_from_run(trial: Trial) -> tuple[str | None, float | None]:
    metrics = rundir.read_metrics(Path(trial.folder)) if trial.folder else None
    objective = (metrics or {}).get("objective") or {}
    return objective.get("name"), objective.get("value")


def best_trial(trials: list[Trial], direction: str, named: str | None) -> Trial | None:
    """SageMaker's own pick (the tuning job's BestTrainingJob) when it names one of them, else
    the best objective among the completed trials."""
    for t in trials:
        if t.name == named:
            return t
    done = [t for t in trials if t.objective is not None and t.status == "Completed"]
    if not done:
        return None
    pick = min if direction == "Minimize" else max
    return pick(done, key=lambda t: t.objective)


def pull(name: str, region: str, dest: Path | None = None, files: bool = True) -> Pulled:
    """List the job's trials and (with `files`) download each into a run folder: a training
    job into `dest` (default outputs/sagemaker/<job>), a tuning job's trials into
    `dest/<trial>`."""
    sm, s3 = clients(region)
    kind, described, trials = records(sm, name)
    dest = Path(dest) if dest is not None else Path("outputs") / "sagemaker" / name
    if kind == "tuning job":
        config = described.get("HyperParameterTuningJobConfig", {})
        objective = config.get("HyperParameterTuningJobObjective", {})
        metric, direction = objective.get("MetricName"), objective.get("Type", "Maximize")
        status = described.get("HyperParameterTuningJobStatus", "Unknown")
        named = (described.get("BestTrainingJob") or {}).get("TrainingJobName")
    else:
        metric, direction, named = None, "Maximize", None
        status = described.get("TrainingJobStatus", "Unknown")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for trial in trials:
            if files:
                download(s3, trial, dest if kind == "training job" else dest / trial.name)
            if not trial.folder:
                continue
            run_metric, value = _objective_from_run(trial)
            if kind == "training job":
                metric, trial.objective = run_metric, value
            elif trial.objective is None and run_metric == metric:
                trial.objective = value  # SageMaker had not scored it (yet)
    except (ClientError, BotoCoreError) as e:
        raise _error(e, "downloading the job's artifacts") from None
    best = best_trial(trials, direction, named)
    pulled = Pulled(kind, name, status, metric, direction, trials, best, dest)
    if files and kind == "tuning job":
        atomic_write_json(dest / SUMMARY, summary(pulled))
    return pulled


def runs_found(pulled: Pulled) -> list[Path]:
    """The pulled folders that are run folders (compare, evaluate and serve read them)."""
    return [Path(t.folder) for t in pulled.trials if t.folder and rundir.is_run(Path(t.folder))]


def summary(pulled: Pulled) -> dict:
    return {
        "kind": pulled.kind,
        "name": pulled.name,
        "status": pulled.status,
        "metric": pulled.metric,
        "direction": pulled.direction,
        "best": pulled.best.name if pulled.best else None,
        "trials": [json.loads(json.dumps(asdict(t), default=str)) for t in pulled.trials],
    }
