"""The SageMaker SDK (v3) calls: a JobSpec and a source bundle -> a training or tuning job.

The only module that imports the SDK, and only when called, so the package (and the training
container) works without it.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import time
from pathlib import Path

from bincount.errors import BincountError
from bincount.sagemaker.capture import Capture, Stopped
from bincount.sagemaker.spec import DATA_CHANNEL, ENTRY_SCRIPT, JobSpec

log = logging.getLogger("bincount")

TRAINING_NAME_MAX, TUNING_NAME_MAX = 63, 32  # SageMaker's limits on job names
SDK_STAMP_CHARS = len("-20261202012345")  # what the SDK appends to a training job's base name
SUFFIX_CHARS = 4
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"  # SageMaker's default LocalPath
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _suffixed(base: str, room: int, rand: str | None = None) -> str:
    """`<base>-<4 random letters/digits>` in `room` characters, in SageMaker's name alphabet."""
    rand = rand or "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(SUFFIX_CHARS)
    )
    clean = re.sub(r"[^A-Za-z0-9-]+", "-", base).strip("-") or "bincount"
    return f"{clean[: room - len(rand) - 1].rstrip('-')}-{rand}"


def training_base_name(base: str, rand: str | None = None) -> str:
    """The base name the SDK turns into the job's name by appending `-YYYYmmddHHMMSS`:
    `bincount-k3x9` -> `bincount-k3x9-20261202012345` (unique to the second, then random;
    at most 63 characters)."""
    return _suffixed(base, TRAINING_NAME_MAX - SDK_STAMP_CHARS, rand)


def tuning_job_name(base: str, rand: str | None = None, now: float | None = None) -> str:
    """`bincount-hpo-k3x9-261202012345`: unique to the second, then random, at most 32
    characters (SageMaker's limit for tuning jobs; its trials append `-NNN-xxxxxxxx`)."""
    stamp = time.strftime("%y%m%d%H%M%S", time.gmtime(now))
    return f"{_suffixed(f'{base}-hpo', TUNING_NAME_MAX - len(stamp) - 1, rand)}-{stamp}"


def console_url(region: str, name: str, tuning: bool = False) -> str:
    where = "hyper-tuning-jobs" if tuning else "jobs"
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{where}/{name}"


def logs_command(region: str, name: str) -> str:
    """The job's CloudWatch logs (a tuning job's trials are named `<tuning job>-NNN-...`, so
    the tuning job's name follows all of them)."""
    return f"aws logs tail {LOG_GROUP} --log-stream-name-prefix {name} --follow --region {region}"


def tensorboard_uri(spec: JobSpec) -> str:
    """Where SageMaker streams the job's TensorBoard folder during the job
    (under <this>/<job name>/tensorboard-output/)."""
    return f"s3://{spec.bucket_or_placeholder()}/{spec.prefix}/tensorboard"


def failed_wait(error: Exception, spec: JobSpec, name: str | None) -> BincountError:
    """A failed (or timed-out) wait as one line: the reason, where to look, the logs."""
    reason = getattr(error, "reason", None) or ""
    if not reason:
        found = re.search(r"(?:Failure Reason|Reason): (.*)", str(error), re.S)
        reason = found.group(1) if found else str(error)
    reason = " | ".join(line.strip() for line in str(reason).splitlines() if line.strip())
    kind = "tuning job" if spec.space else "training job"
    name = name or "<job>"
    return BincountError(
        f"the {kind} {name} failed: {reason} (console: "
        f"{console_url(spec.region, name, bool(spec.space))}; logs: "
        f"{logs_command(spec.region, name)}; results so far: bincount pull {name})"
    )


def sdk_installed() -> None:
    """The SageMaker SDK is an extra (`pip install 'bincount[sagemaker]'`): one clear line."""
    try:
        import sagemaker.train  # noqa: F401
    except ImportError:
        raise BincountError(
            "the SageMaker SDK is not installed: pip install 'bincount[sagemaker]' "
            "(or pip install sagemaker-train==1.27.0)"
        ) from None


def session(spec: JobSpec, capture: Capture | None = None):
    import boto3
    from sagemaker.core.helper.session_helper import Session

    if capture is not None and capture.dry_run:  # nothing is sent: no real credentials needed
        boto_session = boto3.Session(
            region_name=spec.region, aws_access_key_id="dry-run", aws_secret_access_key="dry-run"
        )
    else:
        boto_session = boto3.Session(region_name=spec.region)
    if capture is not None:
        capture.attach(boto_session)
    if spec.bucket is None:  # SageMaker's default bucket name (the SDK creates it if missing)
        account = boto_session.client("sts").get_caller_identity()["Account"]
        spec.bucket = f"sagemaker-{spec.region}-{account}"
    if capture is not None:
        capture.bucket = spec.bucket
    return Session(boto_session=boto_session, default_bucket=spec.bucket)


def model_trainer(spec: JobSpec, bundle_dir: Path, sm_session):
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        MetricDefinition,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
        Tag,
    )
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    sm_session.default_bucket()  # creates SageMaker's default bucket when that is the one
    trainer = ModelTrainer(
        sagemaker_session=sm_session,
        role=spec.role,
        base_job_name=training_base_name(spec.base_job_name),
        input_s3_key_prefix=spec.base_job_name,
        training_image=spec.image_uri,
        source_code=SourceCode(
            source_dir=str(bundle_dir),
            entry_script=ENTRY_SCRIPT,
            requirements="requirements.txt",
        ),
        distributed=(
            Torchrun(process_count_per_node=spec.processes_per_host)
            if spec.distributed == "torchrun"
            else None
        ),
        compute=Compute(
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            volume_size_in_gb=spec.volume_size_gb,
            enable_managed_spot_training=spec.spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_runtime_s,
            max_wait_time_in_seconds=spec.max_wait_s if spec.spot else None,
        ),
        output_data_config=OutputDataConfig(s3_output_path=spec.output_uri()),
        checkpoint_config=(
            CheckpointConfig(s3_uri=spec.checkpoint_uri(), local_path=spec.checkpoint_local_path)
            if spec.checkpointing
            else None
        ),
        training_input_mode=spec.input_mode,
        environment=spec.container_environment(),
        hyperparameters=dict(spec.hyperparameters),
        tags=[Tag(key=t["Key"], value=t["Value"]) for t in spec.tags],
    )
    trainer = trainer.with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in spec.metric_definitions]
    )
    if spec.space is None:  # a tuning job's trials take no TensorBoardOutputConfig (the API's)
        trainer = with_tensorboard(trainer, spec)
    return trainer


def with_tensorboard(trainer, spec: JobSpec):
    """TensorBoard events stream to S3 during the job: the container's TensorBoard logger
    writes to LocalPath (the bridge reads it from SageMaker's tensorboardoutputconfig.json)."""
    from sagemaker.core.training.configs import TensorBoardOutputConfig

    return trainer.with_tensorboard_output_config(
        TensorBoardOutputConfig(
            s3_output_path=tensorboard_uri(spec), local_path=TENSORBOARD_LOCAL_PATH
        )
    )


def data_channel(spec: JobSpec):
    from sagemaker.core.training.configs import Channel, DataSource, S3DataSource

    return Channel(
        channel_name=DATA_CHANNEL,
        data_source=DataSource(
            s3_data_source=S3DataSource(
                s3_data_type="S3Prefix",
                s3_uri=spec.data_uri,
                s3_data_distribution_type="FullyReplicated",
            )
        ),
        input_mode=spec.input_mode,
    )


def parameter_ranges(spec: JobSpec) -> dict:
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    from bincount.sagemaker.overrides import tuned_name

    out = {}
    for p in spec.space.params:
        if p.type == "categorical":
            out[tuned_name(p.key)] = CategoricalParameter([str(v) for v in p.choices])
            continue
        kind = ContinuousParameter if p.type == "float" else IntegerParameter
        scaling = "Logarithmic" if p.log else "Linear"
        out[tuned_name(p.key)] = kind(p.low, p.high, scaling_type=scaling)
    return out


def submit(spec: JobSpec, bundle_dir: Path, capture: Capture | None = None) -> str | None:
    """Create the job (training, or tuning when spec.space is set); returns its name.

    With a dry-run `capture`, the SDK runs as for real but its requests stop at botocore
    (see capture.py): the Create* request is recorded, nothing is sent, None is returned.
    """
    sdk_installed()
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.exceptions import UnexpectedStatusException
    from sagemaker.core.utils.exceptions import WaiterError

    trainer = tuner = None
    try:
        sm_session = session(spec, capture)
        trainer = model_trainer(spec, bundle_dir, sm_session)
        if spec.space is None:
            trainer.train(input_data_config=[data_channel(spec)], wait=spec.wait, logs=spec.wait)
            return trainer._latest_training_job.training_job_name
        from sagemaker.train.tuner import HyperparameterTuner

        space = spec.space
        tuner = HyperparameterTuner(
            model_trainer=trainer,
            objective_metric_name=space.metric,
            objective_type=space.tuning_job_config()["HyperParameterTuningJobObjective"]["Type"],
            hyperparameter_ranges=parameter_ranges(spec),
            metric_definitions=spec.metric_definitions,
            strategy=space.tuning_job_config()["Strategy"],
            max_jobs=space.max_trials,
            max_parallel_jobs=space.parallel_trials,
            early_stopping_type="Auto" if space.early_stopping else "Off",
            random_seed=space.seed,
            tags=spec.tags,
        )
        tuner.tune(
            inputs=[data_channel(spec)],
            job_name=tuning_job_name(spec.base_job_name),
            wait=spec.wait,
        )
        return tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    except Stopped:
        return None
    except (WaiterError, UnexpectedStatusException) as e:
        raise failed_wait(e, spec, _created_name(trainer, tuner, capture)) from None
    except ClientError as e:
        err = e.response.get("Error", {})
        raise BincountError(
            f"SageMaker refused the request: {err.get('Code')}: {err.get('Message')} "
            "(check the role, the region, your quotas and the S3 locations)"
        ) from None
    except BotoCoreError as e:
        raise BincountError(
            f"could not reach AWS: {e} (check your credentials: `aws sts get-caller-identity`)"
        ) from None


def _created_name(trainer, tuner, capture: Capture | None) -> str | None:
    """The name of the job the SDK created (for a message about it)."""
    if tuner is not None and getattr(tuner, "latest_tuning_job", None) is not None:
        return tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    job = getattr(trainer, "_latest_training_job", None) if trainer is not None else None
    if job is not None:
        return job.training_job_name
    return capture.job_name() if capture is not None else None
