"""The job from the config: every field of the SageMaker requests, checked before any call.

`build(cfg, split, launch_id)` reads the `sagemaker` group (and `sweep` for a tuning
job) and raises a BincountError for what SageMaker would refuse later or what would waste money:
no role, no region, a malformed instance type (any `ml.*` type is accepted; the price table only
prices), Pipe input, spot with a max wait not above the max runtime, several instances without a
distributed setup, a malformed VPC or KMS key, a retry count outside 1-30, a backbone that needs
the model hub in an isolated job, a data channel that would copy more than the run reads
(channels.py). The SDK builds the requests from it
(submit.py); `dry_run=true` prints them as captured in botocore (capture.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from bincount.data.layout import is_s3_uri
from bincount.errors import BincountError
from bincount.sagemaker.launch import channels as channel_plans
from bincount.sagemaker.launch import hpo, overrides, prices
from bincount.sagemaker.launch import region as regions
from bincount.sagemaker.launch.hpo import metric_definitions
from bincount.sagemaker.launch.tags import project_tags

ENTRY_SCRIPT = "sagemaker_entry.py"
DATA_CHANNEL = channel_plans.DATA_CHANNEL
MAX_RUNTIME_LIMIT_S = 28 * 24 * 3600  # SageMaker's limit
_INSTANCE_TYPE = re.compile(r"ml\.[a-z][a-z0-9-]*\.[a-z0-9-]+")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
_SUBNET = re.compile(r"subnet-[0-9a-f]{8,17}")
_SECURITY_GROUP = re.compile(r"sg-[0-9a-f]{8,17}")
# A key id (UUID), a key or alias ARN, or alias/NAME (SageMaker's KmsKeyId accepts each).
_KMS_KEY = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
    r"|alias/[A-Za-z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+"
)
MAX_RETRIES = 30  # SageMaker's RetryStrategy.MaximumRetryAttempts: 1-30
_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
CHECKPOINT_ENV = "BINCOUNT_CHECKPOINT_DIR"
PUBLIC_BUCKET, PUBLIC_BUCKET_REGION = "aft-vbi-pds", "us-east-1"

# conf/runner/ensemble.yaml's target (named, not imported: the launch side imports no training)
ENSEMBLE_RUNNER = "bincount.training.ensemble.run"


@dataclass
class JobSpec:
    launch_id: str
    region: str
    role: str
    image_uri: str
    instance_type: str
    instance_count: int
    volume_size_gb: int
    input_mode: str
    data_uri: str
    bucket: str | None  # None: SageMaker's default bucket, known once the account is
    prefix: str
    output_path: str | None
    base_job_name: str
    max_runtime_s: int
    spot: bool
    max_wait_s: int | None
    checkpoint_s3_uri: str | None
    checkpoint_local_path: str
    distributed: str | None
    processes_per_host: int | None
    hyperparameters: dict[str, str]
    tags: list[dict[str, str]]
    environment: dict[str, str]
    metric_definitions: list[dict[str, str]]
    wait: bool = False
    space: hpo.Space | None = None
    spot_savings: float = 0.7
    keep_image_torch: bool = True
    warnings: list[str] = field(default_factory=list)
    # A company account: network, encryption, retries (account_settings()).
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    kms_key: str | None = None
    network_isolation: bool = False
    retries: int = 0
    # The input channels: data (one per source, or a manifest) and model.net.weights.
    inputs: channel_plans.Plan = field(default_factory=channel_plans.Plan)

    @property
    def in_vpc(self) -> bool:
        return bool(self.subnets)

    # ----- S3 locations (the bucket may be SageMaker's default, resolved when submitting) -----
    def bucket_or_placeholder(self) -> str:
        return self.bucket or "<default bucket sagemaker-{region}-{account}>"

    def output_uri(self) -> str:
        return self.output_path or f"s3://{self.bucket_or_placeholder()}/{self.prefix}/output"

    def checkpoint_uri(self) -> str | None:
        if not self.checkpointing:
            return None
        return (
            self.checkpoint_s3_uri
            or f"s3://{self.bucket_or_placeholder()}/{self.prefix}/checkpoints/{self.launch_id}"
        )

    @property
    def checkpointing(self) -> bool:
        return self.spot or bool(self.checkpoint_s3_uri)

    def container_environment(self) -> dict[str, str]:
        env = dict(self.environment)
        env.update(self.inputs.environment)
        if self.checkpointing:
            env[CHECKPOINT_ENV] = self.checkpoint_local_path
        return env

    def estimate(self) -> prices.Estimate:
        return prices.estimate(
            self.instance_type,
            self.instance_count,
            self.max_runtime_s,
            jobs=self.space.max_trials if self.space else 1,
            spot=self.spot,
            spot_savings=self.spot_savings,
            region=self.region,  # AWS's Price List API where credentials exist (prices.py)
        )


def resolve_region(configured: str | None) -> str:
    return regions.resolve(configured, "sagemaker.region", "sagemaker.region=eu-west-1")


def image_uri(sm: DictConfig, region: str) -> str:
    """AWS's PyTorch training image for the instance (the SDK picks cpu or gpu by its family)."""
    if sm.get("image_uri"):
        return str(sm.image_uri)
    from sagemaker.core import image_uris  # the SDK's offline table of AWS images

    try:
        return image_uris.retrieve(
            "pytorch",
            region=region,
            version=str(sm.framework_version),
            py_version=str(sm.py_version),
            instance_type=str(sm.instance_type),
            image_scope="training",
        )
    except ValueError as e:
        raise BincountError(
            f"no PyTorch training image for framework_version={sm.framework_version}, "
            f"py_version={sm.py_version} in {region} ({e}); set sagemaker.framework_version / "
            "sagemaker.py_version, or sagemaker.image_uri=URI"
        ) from None


def account_settings(sm: DictConfig, warnings: list[str]) -> dict:
    """sagemaker.vpc, kms_key, network_isolation, retries: checked, as JobSpec fields."""
    vpc = sm.get("vpc") or {}
    subnets = [str(s) for s in (vpc.get("subnets") or [])]
    groups = [str(g) for g in (vpc.get("security_groups") or [])]
    if bool(subnets) != bool(groups):
        raise BincountError(
            "sagemaker.vpc needs both subnets and security_groups (SageMaker's VpcConfig): "
            "sagemaker.vpc.subnets=[subnet-...] sagemaker.vpc.security_groups=[sg-...]"
        )
    for value, pattern, key in (
        (subnets, _SUBNET, "subnets"),
        (groups, _SECURITY_GROUP, "security_groups"),
    ):
        bad = [v for v in value if not pattern.fullmatch(v)]
        if bad:
            example = "subnet-0123456789abcdef0" if key == "subnets" else "sg-0123456789abcdef0"
            raise BincountError(f"sagemaker.vpc.{key}: {bad[0]} is not an id like {example}")
    if len(subnets) > 16 or len(groups) > 5:
        raise BincountError(
            "sagemaker.vpc: SageMaker takes at most 16 subnets and 5 security groups"
        )
    kms = sm.get("kms_key") or None
    if kms is not None and not _KMS_KEY.fullmatch(str(kms)):
        raise BincountError(
            f"sagemaker.kms_key={kms} is not a KMS key: use its id, its ARN, or alias/NAME"
        )
    try:
        retries = int(sm.get("retries") or 0)
    except (TypeError, ValueError):
        raise BincountError(
            f"sagemaker.retries={sm.get('retries')} must be a whole number"
        ) from None
    if not 0 <= retries <= MAX_RETRIES:
        raise BincountError(
            f"sagemaker.retries={retries}: SageMaker retries a job 1 to {MAX_RETRIES} times "
            "(0: no retry strategy)"
        )
    isolation = bool(sm.get("network_isolation", False))
    return {
        "subnets": subnets,
        "security_groups": groups,
        "kms_key": str(kms) if kms else None,
        "network_isolation": isolation,
        "retries": retries,
    }


def _check_public_bucket(plan: channel_plans.Plan, region: str) -> None:
    for channel in plan.data:
        if channel.uri.startswith(f"s3://{PUBLIC_BUCKET}/") and region != PUBLIC_BUCKET_REGION:
            raise BincountError(
                f"the public bucket {PUBLIC_BUCKET} is in {PUBLIC_BUCKET_REGION} and a SageMaker "
                f"job reads its channels from its own region ({region}): run in "
                f"{PUBLIC_BUCKET_REGION} (sagemaker.region=us-east-1), or copy the images to a "
                "bucket in your region (`bincount data fetch`, then `bincount data upload`) and "
                "pass sagemaker.data_uri"
            )


def _offline_weights(cfg: DictConfig, account: dict, warnings: list[str]) -> None:
    """A job that cannot reach the model hub must get its weights as data."""
    if not channel_plans.needs_model_hub(cfg):
        return
    backbone = OmegaConf.select(cfg, "model.net.backbone")
    fix = (
        "pass the weights as data: model.net.weights=s3://BUCKET/KEY.pth or model.net.weights=FILE "
        "(uploaded by the launcher), or use model=efficientnet_lite0 (weights shipped offline)"
    )
    if account["network_isolation"]:
        raise BincountError(
            f"backbone {backbone} downloads its pretrained weights from the model hub at start, "
            f"and sagemaker.network_isolation=true gives the job no network: {fix}"
        )
    if account["subnets"]:
        warnings.append(
            f"backbone {backbone} downloads its weights from the model hub at start: in a VPC "
            f"that needs a NAT gateway (or a proxy); without one, {fix}"
        )


def _with_objective_mode(cfg, split, space, warnings) -> overrides.Split:
    """The job keeps (and exports) the best checkpoint by the tuner's direction: a minimised
    objective sends optimized_mode=min, so ModelCheckpoint uses mode=min and the `best` line
    the tuner reads last is the smallest value."""
    mode = "min" if space.direction == "minimize" else "max"
    if re.search(r"(acc|accuracy|f1|off_by_one)$", space.metric) and mode == "min":
        raise BincountError(
            f"sweep.objective.direction=minimize on {space.metric} would look for the least "
            "accurate model: drop it (maximize is the default) or tune a loss or error metric "
            "(e.g. optimized_metric=val/rmse)"
        )
    if re.search(r"(loss|rmse|mae|error)$", space.metric) and mode == "max":
        warnings.append(
            f"the tuning objective {space.metric} is maximised: add "
            "sweep.objective.direction=minimize if lower is better"
        )
    if str(cfg.get("optimized_mode", "max")) == mode and "optimized_mode" not in split.keys:
        return split
    pairs = zip(split.training, split.keys, strict=True)
    kept = [(o, k) for o, k in pairs if k != "optimized_mode"]
    return overrides.Split(
        training=[o for o, _ in kept] + [f"optimized_mode={mode}"],
        keys=[k for _, k in kept] + ["optimized_mode"],
        launcher=split.launcher,
    )


def _int(sm: DictConfig, key: str, minimum: int = 1) -> int:
    try:
        value = int(sm[key])
    except (TypeError, ValueError):
        raise BincountError(f"sagemaker.{key}={sm.get(key)} must be a whole number") from None
    if value < minimum:
        raise BincountError(f"sagemaker.{key}={value} must be at least {minimum}")
    return value


def refuse_ensemble(cfg: DictConfig) -> None:
    """An ensemble (runner=ensemble) trains several models: no one job's model to serve."""
    if OmegaConf.select(cfg, "runner._target_") == ENSEMBLE_RUNNER:
        raise BincountError(
            "an ensemble (runner=ensemble, e.g. experiment=ensemble) does not run as one training "
            "job: its model folder would hold no single checkpoint to serve. Launch "
            "experiment=best_single, or launch each member as its own job and average them "
            "with `bincount evaluate RUN1 RUN2 RUN3`"
        )


def build(cfg: DictConfig, split: overrides.Split, launch_id: str) -> JobSpec:
    """The job of the composed launch config and the training overrides of the command line."""
    refuse_ensemble(cfg)
    sm = cfg.sagemaker
    warnings: list[str] = []
    role = sm.get("role")
    if not role:
        raise BincountError(
            "no IAM role for the job: set sagemaker.role=arn:aws:iam::<account>:role/<name> "
            "(or SAGEMAKER_ROLE), a role SageMaker may assume with S3 access"
        )
    if not _ROLE_ARN.match(str(role)):
        raise BincountError(
            f"sagemaker.role={role} is not a role ARN: use arn:aws:iam::<account>:role/<name>"
        )
    region = resolve_region(sm.get("region"))
    account = account_settings(sm, warnings)
    itype = str(sm.instance_type)
    if not _INSTANCE_TYPE.fullmatch(itype):
        raise BincountError(
            f"sagemaker.instance_type={itype} is not a SageMaker instance type: use "
            "ml.<family>.<size>, e.g. ml.m5.xlarge or ml.g5.xlarge"
        )
    count = _int(sm, "instance_count")
    distributed = sm.get("distributed") or None
    if distributed not in (None, "torchrun"):
        raise BincountError(f"sagemaker.distributed={distributed}: use torchrun or null")
    if count > 1 and not distributed:
        raise BincountError(
            f"sagemaker.instance_count={count} without a distributed setup would run {count} "
            "separate copies of the same training: add sagemaker=ddp (torchrun on every host)"
        )
    max_runtime = _int(sm, "max_runtime_s")
    if max_runtime > MAX_RUNTIME_LIMIT_S:
        raise BincountError(f"sagemaker.max_runtime_s={max_runtime} is above SageMaker's 28 days")
    spot = bool(sm.spot)
    max_wait = None
    if spot:
        max_wait = int(sm.max_wait_s) if sm.get("max_wait_s") is not None else 2 * max_runtime
        if max_wait <= max_runtime:
            raise BincountError(
                f"sagemaker.max_wait_s={max_wait} must be above sagemaker.max_runtime_s="
                f"{max_runtime} (the wait for spot capacity counts in it): raise max_wait_s or "
                "leave it null (2 x max_runtime_s)"
            )
    elif sm.get("max_wait_s") is not None:
        warnings.append("sagemaker.max_wait_s applies to spot jobs only: ignored")
    input_mode = str(sm.input_mode)
    if input_mode == "Pipe":
        raise BincountError(
            "sagemaker.input_mode=Pipe streams a channel through a FIFO as one record stream, "
            "and this training opens image files by path: use sagemaker.input_mode=FastFile "
            "(streams each file on first read) or File (copies the channel first)"
        )
    if input_mode not in ("File", "FastFile"):
        raise BincountError(f"sagemaker.input_mode={input_mode}: use FastFile or File")
    plan = channel_plans.data_plan(cfg, input_mode, sm.get("data_uri") or None)
    _check_public_bucket(plan, region)
    weights = channel_plans.weights_channel(cfg)
    if weights is not None:
        plan.channels.append(weights)
        plan.environment[channel_plans.WEIGHTS_ENV] = channel_plans.weights_file_name(weights)
    _offline_weights(cfg, account, warnings)
    warnings.extend(plan.warnings)
    volume = _int(sm, "volume_size_gb")
    if plan.volume_gb() > volume:
        gigabytes = plan.copied_photos * channel_plans.BYTES_PER_PHOTO / 1e9
        warnings.append(
            f"sagemaker.volume_size_gb={volume} raised to {plan.volume_gb()}: the job copies "
            f"{plan.copied_photos:,} photos (~{gigabytes:.1f} GB) onto its volume before training"
        )
        volume = plan.volume_gb()
    for key in ("output_path", "checkpoint_s3_uri"):
        if sm.get(key) and not is_s3_uri(str(sm[key])):
            raise BincountError(f"sagemaker.{key}={sm[key]} must be an s3:// URI")
    space = hpo.space(cfg) if cfg.get("sweep") is not None else None
    tuned = set()
    if space is not None:
        hpo.check_objective(space.metric)  # SageMaker needs a metric definition for it
        tuned = {p.key for p in space.params}
        for p in space.params:
            overrides.tuned_name(p.key)  # a clear error for a key no hyperparameter can carry
        both = sorted(tuned & set(split.keys))
        if both:
            warnings.append(f"{', '.join(both)} set on the command line and tuned: tuned wins")
        split = _with_objective_mode(cfg, split, space, warnings)
    hyperparameters = split.hyperparameters(drop_keys=tuned)
    environment = {str(k): str(v) for k, v in (sm.get("environment") or {}).items()}
    processes = sm.get("processes_per_host")
    return JobSpec(
        launch_id=launch_id,
        region=region,
        role=str(role),
        image_uri=image_uri(sm, region),
        instance_type=itype,
        instance_count=count,
        volume_size_gb=volume,
        input_mode=input_mode,
        data_uri=plan.data[0].uri,
        bucket=sm.get("bucket") or None,
        prefix=str(sm.prefix).strip("/"),
        output_path=sm.get("output_path") or None,
        base_job_name=str(sm.base_job_name),
        max_runtime_s=max_runtime,
        spot=spot,
        max_wait_s=max_wait,
        checkpoint_s3_uri=sm.get("checkpoint_s3_uri") or None,
        checkpoint_local_path=str(sm.checkpoint_local_path),
        distributed=distributed,
        processes_per_host=int(processes) if processes else None,
        hyperparameters=dict(hyperparameters),
        tags=project_tags(dict(sm.get("tags") or {})),
        environment=environment,
        metric_definitions=metric_definitions(),
        wait=bool(sm.get("wait", False)),
        space=space,
        spot_savings=float(sm.get("spot_savings", 0.7)),
        keep_image_torch=bool(sm.get("keep_image_torch", True)),
        warnings=warnings,
        inputs=plan,
        **account,
    )
