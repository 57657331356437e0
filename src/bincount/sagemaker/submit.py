"""The SageMaker SDK (v3) calls: a JobSpec and a source bundle -> a training or tuning job.

The only module that imports the SDK, and only when called, so the package (and the training
container) works without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bincount.errors import BincountError
from bincount.sagemaker.capture import Capture, Stopped
from bincount.sagemaker.spec import DATA_CHANNEL, ENTRY_SCRIPT, JobSpec

log = logging.getLogger("bincount")


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
        base_job_name=spec.base_job_name,
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
    return trainer.with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in spec.metric_definitions]
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
            base_tuning_job_name=f"{spec.base_job_name}-hpo"[:20],
        )
        tuner.tune(inputs=[data_channel(spec)], wait=spec.wait)
        return tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    except Stopped:
        return None
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
