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
from bincount.sagemaker.launch import channels
from bincount.sagemaker.launch.capture import Capture, Stopped
from bincount.sagemaker.launch.spec import ENTRY_SCRIPT, JobSpec

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
    if spec.kms_key:
        encrypt_uploads(boto_session, spec.kms_key)
    sm_session = Session(boto_session=boto_session, default_bucket=spec.bucket)
    if spec.bucket is None:  # SageMaker's default bucket, named by the SDK (created if missing)
        if capture is not None and capture.dry_run:  # a dry run answers ListBuckets with it
            capture.bucket = sm_session.generate_default_sagemaker_bucket_name(boto_session)
        spec.bucket = sm_session.default_bucket()
    if capture is not None:
        capture.bucket = spec.bucket
    return sm_session


def encrypt_uploads(boto_session, kms_key: str) -> None:
    """Every object written through this session is encrypted with the key (SSE-KMS): ours
    (manifests, weights) and the SDK's (code, drivers, and the tuner's sourcedir.tar.gz, which
    sagemaker-train 1.27.0 uploads without its output key)."""

    def add_key(params, **kwargs):
        params.setdefault("ServerSideEncryption", "aws:kms")
        params.setdefault("SSEKMSKeyId", kms_key)

    for operation in ("PutObject", "CreateMultipartUpload"):
        boto_session.events.register(f"before-parameter-build.s3.{operation}", add_key)


def model_trainer(spec: JobSpec, bundle_dir: Path, sm_session):
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        MetricDefinition,
        Networking,
        OutputDataConfig,
        RetryStrategy,
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
            volume_kms_key_id=spec.kms_key,
        ),
        networking=(
            Networking(
                subnets=spec.subnets or None,
                security_group_ids=spec.security_groups or None,
                enable_network_isolation=spec.network_isolation,
            )
            if spec.in_vpc or spec.network_isolation
            else None
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_runtime_s,
            max_wait_time_in_seconds=spec.max_wait_s if spec.spot else None,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=spec.output_uri(), kms_key_id=spec.kms_key
        ),
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
    if spec.retries:
        trainer = trainer.with_retry_strategy(RetryStrategy(maximum_retry_attempts=spec.retries))
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
    """The first data channel (kept for callers of one channel; see input_channels)."""
    return _channel(spec.inputs.data[0], spec)


def _channel(planned: channels.Channel, spec: JobSpec):
    from sagemaker.core.training.configs import Channel, DataSource, S3DataSource

    return Channel(
        channel_name=planned.name,
        data_source=DataSource(
            s3_data_source=S3DataSource(
                s3_data_type=planned.data_type,
                s3_uri=planned.source_uri(),
                s3_data_distribution_type="FullyReplicated",
            )
        ),
        input_mode=planned.input_mode or spec.input_mode,
    )


def _upload_extra(spec: JobSpec) -> dict:
    if not spec.kms_key:
        return {}
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": spec.kms_key}


def _exists(s3, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def prepare_inputs(spec: JobSpec, sm_session, dry_run: bool) -> list:
    """Write the manifests, upload (once) or check the weights, then the SDK's channels.

    Everything goes through the session's client, so a dry run's capture answers it."""
    s3 = sm_session.boto_session.client("s3")
    extra = _upload_extra(spec)
    for planned in spec.inputs.channels:
        if planned.data_type == "ManifestFile":
            key = f"{spec.prefix}/manifests/{spec.launch_id}/{planned.name}.manifest"
            s3.put_object(Bucket=spec.bucket, Key=key, Body=planned.manifest_body(), **extra)
            planned.manifest_uri = f"s3://{spec.bucket}/{key}"
        if planned.name != channels.WEIGHTS_CHANNEL:
            continue
        if planned.local_file is not None:
            key = channels.weights_key(planned.local_file, spec.prefix)
            if dry_run or not _exists(s3, spec.bucket, key):
                s3.upload_file(str(planned.local_file), spec.bucket, key, ExtraArgs=extra or None)
            planned.uri = f"s3://{spec.bucket}/{key}"
        elif not dry_run:
            bucket, _, key = planned.uri[len("s3://") :].partition("/")
            if not _exists(s3, bucket, key):
                raise BincountError(
                    f"model.net.weights={planned.uri} does not exist (S3 HeadObject: 404): check "
                    "the URI, or give a local file (the launcher uploads it)"
                )
    return [_channel(c, spec) for c in spec.inputs.channels]


def parameter_ranges(spec: JobSpec) -> dict:
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    from bincount.sagemaker.launch.overrides import tuned_name

    out = {}
    for p in spec.space.params:
        if p.type == "categorical":
            out[tuned_name(p.key)] = CategoricalParameter([str(v) for v in p.choices])
            continue
        kind = ContinuousParameter if p.type == "float" else IntegerParameter
        scaling = "Logarithmic" if p.log else "Linear"
        out[tuned_name(p.key)] = kind(p.low, p.high, scaling_type=scaling)
    return out


def tuner_class(spec: JobSpec):
    """The SDK's tuner, completing what its trial definition leaves out of the trainer's
    settings (sagemaker-train 1.27.0 copies the VPC, output key and retries, but not network
    isolation nor the volume's key)."""
    from sagemaker.train.tuner import HyperparameterTuner

    class Tuner(HyperparameterTuner):
        def _build_training_job_definition(self, inputs):
            definition = super()._build_training_job_definition(inputs)
            if spec.network_isolation:
                definition.enable_network_isolation = True
            if spec.kms_key:
                definition.resource_config.volume_kms_key_id = spec.kms_key
            return definition

    return Tuner


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
    capture = capture if capture is not None else Capture(dry_run=False)
    try:
        sm_session = session(spec, capture)
        inputs = prepare_inputs(spec, sm_session, capture.dry_run)
        trainer = model_trainer(spec, bundle_dir, sm_session)
        if spec.space is None:
            trainer.train(input_data_config=inputs, wait=spec.wait, logs=spec.wait)
            return capture.job_name()  # the name the SDK sent, as botocore received it
        space = spec.space
        tuner = tuner_class(spec)(
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
            inputs=inputs,
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
    return capture.job_name() if capture is not None else None
