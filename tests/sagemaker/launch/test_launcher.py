"""launch_sagemaker.py against a real moto server: what SageMaker and S3 received."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from sm_moto import BUCKET, REGION, ROLE, s3_keys, s3_read

from bincount.config import config_dir, project_root
from bincount.sagemaker.launch import prices
from bincount.sagemaker.launch.launcher import launch
from bincount.sagemaker.launch.overrides import OVERRIDES_KEY, decode

CPU_IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-training:2.10.0-cpu-py313"
BASE = [
    f"sagemaker.bucket={BUCKET}",
    "sagemaker.instance_type=ml.m5.xlarge",
    f"data.source=s3://{BUCKET}/abid",
]
# A line EpochSummary really prints, and the one the bridge prints at the end.
EPOCH_LINE = (
    "[2026-11-25 05:32:54,392][bincount][INFO] epoch 1/2 (7s): train/loss_epoch=1.7098 "
    "train/acc=0.1875 val/loss=1.9174 val/acc=0.2000 val/rmse=1.7321"
)


def run_launcher(*overrides, tmp_path):
    return subprocess.run(
        [
            sys.executable,
            str(project_root() / "launch_sagemaker.py"),
            *overrides,
            f"hydra.run.dir={tmp_path / 'launch'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


def launch_in_process(*overrides, tmp_path, echo=lambda s: None):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=list(overrides))
    return launch(cfg, list(overrides), tmp_path / "launch", echo=echo)


@pytest.mark.long
def test_training_job_is_the_local_run_with_spot(aws, tmp_path):
    overrides = ["model=resnet50", "lr=0.01", "trainer.max_epochs=3", "+data.extra=[1,2]"]
    proc = run_launcher(*overrides, *BASE, "sagemaker.spot=true", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [req] = aws.sagemaker("CreateTrainingJob")
    algo = req["AlgorithmSpecification"]
    assert algo["TrainingImage"] == CPU_IMAGE
    assert algo["TrainingInputMode"] == "FastFile"
    assert req["ResourceConfig"]["InstanceCount"] == 1
    assert req["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert req["RoleArn"] == ROLE
    # The training overrides, verbatim, in one hyperparameter; nothing of the launcher's own.
    assert list(req["HyperParameters"]) == [OVERRIDES_KEY]
    assert decode(req["HyperParameters"][OVERRIDES_KEY]) == overrides
    # Spot: a max wait above the max runtime, checkpoints synced to S3 and found by the bridge.
    assert req["EnableManagedSpotTraining"] is True
    stop = req["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] > stop["MaxRuntimeInSeconds"] == 14400
    ckpt = req["CheckpointConfig"]
    assert ckpt["LocalPath"] == "/opt/ml/checkpoints"
    assert ckpt["S3Uri"].startswith(f"s3://{BUCKET}/bincount/checkpoints/")
    assert req["Environment"]["BINCOUNT_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    # Metric definitions that read the job's real log lines.
    regex = {m["Name"]: m["Regex"] for m in algo["MetricDefinitions"]}
    assert re.search(regex["val/acc"], EPOCH_LINE).group(1) == "0.2000"
    assert re.search(regex["train/acc"], EPOCH_LINE).group(1) == "0.1875"
    assert re.search(regex["val/acc"], "best val/acc=0.812500").group(1) == "0.812500"
    assert {"Key": "bincount:project", "Value": "bincount"} in req["Tags"]
    data = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "data")
    assert data["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/abid/"
    assert data["InputMode"] == "FastFile"
    assert req["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/bincount/output"

    # The source bundle in S3: package, configs, train.py, pinned requirements, entrypoint.
    code = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "code")
    prefix = code["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    keys = {k[len(prefix) + 1 :] for k in s3_keys(prefix)}
    for needed in (
        "train.py",
        "sagemaker_entry.py",
        "requirements.txt",
        "bundle.json",
        "conf/train.yaml",
        "conf/model/resnet50.yaml",
        "src/bincount/training/runner.py",
        "src/bincount/sagemaker/container/bridge.py",
    ):
        assert needed in keys
    assert not [k for k in keys if k.split("/")[0] in ("outputs", "data", ".venv", "tests")]
    assert not [k for k in keys if "__pycache__" in k or k.endswith((".ckpt", ".pyc"))]
    requirements = s3_read(f"{prefix}/requirements.txt").decode()
    assert "pytorch-lightning==2.6.6" in requirements
    assert "\ntorch==" not in requirements  # the image's own torch build
    assert "sagemaker" not in requirements.replace("# Pinned", "")
    # Only what training imports: no serving, export, sweep, trackers the job does not use.
    installed = {line.split("==")[0].lower() for line in requirements.splitlines() if "==" in line}
    installed -= {
        line[2:].split("==")[0].lower() for line in requirements.splitlines() if line[:1] == "#"
    }
    for unused in ("flask", "waitress", "onnx", "onnxruntime", "wandb", "mlflow-skinny", "optuna"):
        assert unused not in installed
    assert {"pytorch-lightning", "timm", "hydra-core", "pillow"} <= installed

    # What was launched is recorded next to the bundle.
    record = json.loads((tmp_path / "launch" / "requests.json").read_text())
    assert (
        record["job_name"]
        and record["requests"]["CreateTrainingJob"]["HyperParameters"] == (req["HyperParameters"])
    )
    assert "submitted training job" in proc.stdout and "cost estimate" in proc.stdout


def test_a_job_whose_logger_asks_for_a_tracker_installs_it(aws, tmp_path):
    launch_in_process(*BASE, "logger=wandb", "debug=health", tmp_path=tmp_path)
    [req] = aws.sagemaker("CreateTrainingJob")
    code = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "code")
    prefix = code["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    lines = s3_read(f"{prefix}/requirements.txt").decode().splitlines()
    assert (
        "wandb==0.31.0" in lines
        and "# mlflow-skinny==3.17.2  (not used by this job's config)" in lines
    )
    assert any(line.startswith("matplotlib==") for line in lines)  # the run report's plots


def test_ddp_job_runs_torchrun_on_every_host(aws, tmp_path):
    launch_in_process("sagemaker=ddp", "sagemaker.instance_count=3", *BASE, tmp_path=tmp_path)
    [req] = aws.sagemaker("CreateTrainingJob")
    assert req["ResourceConfig"]["InstanceCount"] == 3
    assert req["HyperParameters"] == {}
    drivers = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "sm_drivers")
    prefix = drivers["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    assert "torchrun_driver.py" in s3_read(f"{prefix}/sm_train.sh").decode()
    assert json.loads(s3_read(f"{prefix}/sourcecode.json"))["entry_script"] == (
        "sagemaker_entry.py"
    )
    assert "EnableManagedSpotTraining" not in req or not req["EnableManagedSpotTraining"]
    assert "CheckpointConfig" not in req


def test_tuning_job_searches_the_one_space(aws, tmp_path):
    launch_in_process(
        "+sweep=hpo", "model=resnet18", "lr=0.5", "sweep.max_trials=6", *BASE, tmp_path=tmp_path
    )
    [req] = aws.sagemaker("CreateHyperParameterTuningJob")
    config = req["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    objective = config["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "val/acc"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "batch_size", "Values": ["16", "32", "64", "128", "256"]}
    ]
    definition = req["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert decode(static[OVERRIDES_KEY]) == ["model=resnet18"]  # lr is tuned, not fixed
    assert static["sagemaker_program"] == "sagemaker_entry.py"
    names = [m["Name"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "val/acc" in names
    assert {"Key": "bincount:project", "Value": "bincount"} in req["Tags"]
    # The trials run the bundle through SageMaker's script mode: it must be complete there too.
    key = static["sagemaker_submit_directory"].split(f"s3://{BUCKET}/", 1)[1]
    with tarfile.open(fileobj=io.BytesIO(s3_read(key))) as tar:
        members = set(tar.getnames())
    assert {"sagemaker_entry.py", "train.py", "conf/sweep/hpo.yaml", "requirements.txt"} <= members


def test_dry_run_prints_requests_and_cost_and_calls_nothing(aws, tmp_path):
    lines = []
    result = launch_in_process(
        "+sweep=hpo",
        "sagemaker.spot=true",
        "dry_run=true",
        *BASE,
        tmp_path=tmp_path,
        echo=lines.append,
    )
    assert aws.requests == []
    assert result.job_name is None
    out = "\n".join(lines)
    assert '"CreateHyperParameterTuningJob"' in out and '"ScalingType": "Logarithmic"' in out
    assert "on-demand: up to $" in out and "spot:      up to $" in out
    # 20 trials x 4 h x $0.23/h on-demand, and 30 % of it on spot
    assert "$18.40" in out and "$5.52" in out
    # What the SDK itself built, captured in botocore and checked against the service model.
    assert "CreateHyperParameterTuningJob: valid against botocore's SageMaker" in out
    request = result.requests["CreateHyperParameterTuningJob"]
    definition = request["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"]["sagemaker_program"] == "sagemaker_entry.py"
    assert definition["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert "would upload" in out and "/input/sm_drivers" in out
    record = json.loads((tmp_path / "launch" / "requests.json").read_text())
    assert record["requests"] == json.loads(json.dumps(result.requests, default=str))


def test_the_validator_is_botocores_and_reports_what_is_wrong():
    from bincount.sagemaker.launch.capture import validate

    problems = validate("CreateTrainingJob", {"TrainingJobName": "x", "RoleArn": 3})
    text = " ".join(problems)
    assert "OutputDataConfig" in text and "RoleArn" in text


def test_dry_run_from_the_command_line(aws, tmp_path):
    proc = run_launcher(*BASE, "dry_run=true", "lr=0.02", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert aws.requests == []
    start = proc.stdout.index("{")
    end = proc.stdout.rindex("}") + 1
    req = json.loads(proc.stdout[start:end])["CreateTrainingJob"]
    assert decode(req["HyperParameters"][OVERRIDES_KEY]) == ["lr=0.02"]
    assert "cost estimate (on-demand chosen)" in proc.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sagemaker.role=null"], "no IAM role"),
        (["sagemaker.role=my-role"], "is not a role ARN"),
        (["sagemaker.instance_type=m5.xlarge"], "is not a SageMaker instance type"),
        (["sagemaker.input_mode=Pipe"], "use sagemaker.input_mode=FastFile"),
        (["sagemaker.spot=true", "sagemaker.max_wait_s=14400"], "must be above"),
        (["sagemaker.instance_count=2"], "add sagemaker=ddp"),
        (["data.source=/tmp/somewhere"], "bincount data upload"),
        (["data.source=s3://aft-vbi-pds"], "aft-vbi-pds is in us-east-1"),
        (["ckpt_path=/tmp/x.ckpt"], "ckpt_path"),
        (["+sweep=hpo", "+sweep.params.nope.type=float"], "not a key of the training config"),
        (["+sweep=hpo", "sweep.strategy=grid"], "categorical params only"),
    ],
)
def test_clear_errors_before_any_call(aws, tmp_path, overrides, message):
    from bincount.errors import BincountError

    with pytest.raises(BincountError, match=re.escape(message)):
        launch_in_process(*BASE, *overrides, tmp_path=tmp_path)
    assert aws.requests == []


def test_no_region_is_a_clear_error(aws, tmp_path, monkeypatch):
    from bincount.errors import BincountError

    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(BincountError, match="no AWS region"):
        launch_in_process(*BASE, tmp_path=tmp_path)
    assert aws.requests == []


def test_cli_prints_the_error_without_traceback(aws, tmp_path):
    proc = run_launcher(*BASE, "sagemaker.instance_type=ml.nope", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "error: sagemaker.instance_type=ml.nope is not a SageMaker instance type" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert aws.requests == []


@pytest.mark.long
def test_without_a_bucket_the_sdk_default_bucket_is_used(aws, tmp_path):
    """sagemaker.bucket=null: the SDK session's default bucket. Its own STS call names it
    (answered by the dry run's capture: the SDK sends it to sts.<region>.amazonaws.com, past
    AWS_ENDPOINT_URL, so not to moto), and the SDK config's DefaultS3Bucket wins, as the SDK
    documents (the hand-made sagemaker-<region>-<account> ignored it)."""
    base = [o for o in BASE if not o.startswith("sagemaker.bucket=")]
    result = launch_in_process(*base, "sagemaker.spot=true", "dry_run=true", tmp_path=tmp_path)
    req = result.requests["CreateTrainingJob"]
    default = f"sagemaker-{REGION}-000000000000"  # the dry run's placeholder account
    assert req["OutputDataConfig"]["S3OutputPath"] == f"s3://{default}/bincount/output"
    assert req["CheckpointConfig"]["S3Uri"].startswith(f"s3://{default}/bincount/checkpoints/")

    config = Path(os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"])
    config.write_text(config.read_text() + f"      Session:\n        DefaultS3Bucket: {BUCKET}\n")
    launch_in_process(*base, "sagemaker.spot=true", tmp_path=tmp_path)
    [req] = aws.sagemaker("CreateTrainingJob")
    assert req["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/bincount/output"
    assert req["CheckpointConfig"]["S3Uri"].startswith(f"s3://{BUCKET}/bincount/checkpoints/")


def test_any_ml_instance_type_launches_and_an_unlisted_one_is_priced_unknown(aws, tmp_path):
    lines = []
    launch_in_process(
        *BASE, "sagemaker.instance_type=ml.g6e.xlarge", tmp_path=tmp_path, echo=lines.append
    )
    [req] = aws.sagemaker("CreateTrainingJob")
    assert req["ResourceConfig"]["InstanceType"] == "ml.g6e.xlarge"
    assert req["AlgorithmSpecification"]["TrainingImage"].endswith("-gpu-py313")
    out = "\n".join(lines)
    assert "price unknown" in out and prices.PRICES_AS_OF in out and prices.PRICES_SOURCE in out


# ----- a company account: VPC, KMS, isolation, retries; only the data asked for; weights -----
SUBNET, GROUP, KEY = "subnet-0123456789abcdef0", "sg-0123456789abcdef0", "alias/bincount-team"
ACCOUNT = [
    f"sagemaker.vpc.subnets=[{SUBNET}]",
    f"sagemaker.vpc.security_groups=[{GROUP}]",
    f"sagemaker.kms_key={KEY}",
    "sagemaker.network_isolation=true",
    "sagemaker.retries=3",
    # the offline wheels (on by default with isolation): launch/test_packaging.py
    "sagemaker.bundle.wheels=false",
]


def _assert_account_fields(definition: dict) -> None:
    """The fields of a CreateTrainingJob request, or of a tuning job's TrainingJobDefinition."""
    assert definition["VpcConfig"] == {"SecurityGroupIds": [GROUP], "Subnets": [SUBNET]}
    assert definition["EnableNetworkIsolation"] is True
    assert definition["RetryStrategy"] == {"MaximumRetryAttempts": 3}
    assert definition["OutputDataConfig"]["KmsKeyId"] == KEY
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == KEY


@pytest.mark.parametrize("sweep", [[], ["+sweep=hpo"]], ids=["training", "tuning"])
@pytest.mark.long
def test_vpc_kms_isolation_and_retries_reach_the_request_fields(aws, tmp_path, sweep):
    from bincount.sagemaker.launch.capture import validate

    lines = []
    result = launch_in_process(
        *BASE, *ACCOUNT, *sweep, "dry_run=true", tmp_path=tmp_path, echo=lines.append
    )
    assert aws.requests == []
    [(op, request)] = result.requests.items()
    assert validate(op, request) == []
    assert f"{op}: valid against botocore's SageMaker service model" in lines
    _assert_account_fields(request.get("TrainingJobDefinition", request))
    # The real launch sends the same fields (moto behind the recording proxy).
    launch_in_process(*BASE, *ACCOUNT, *sweep, tmp_path=tmp_path)
    [sent] = aws.sagemaker(op)
    _assert_account_fields(sent.get("TrainingJobDefinition", sent))
    # What the launcher uploads is encrypted with the key too (the SDK's code, our manifest).
    puts = [r for r in aws.requests if r.method == "PUT" and "/input/" in r.path]
    assert puts and all(r.headers.get("x-amz-server-side-encryption") == "aws:kms" for r in puts)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([f"sagemaker.vpc.subnets=[{SUBNET}]"], "needs both subnets and security_groups"),
        (["sagemaker.vpc.subnets=[net-1]", f"sagemaker.vpc.security_groups=[{GROUP}]"], "net-1"),
        (["sagemaker.kms_key=my key"], "is not a KMS key"),
        (["sagemaker.retries=31"], "1 to 30 times"),
        (["sagemaker.network_isolation=true", "model=resnet50"], "model.net.weights=s3://"),
        (["+sweep=hpo", "sweep.objective.direction=minimize"], "least accurate model"),
        (["model.net.weights=/nowhere/r50.pth"], "no such file on this machine"),
        (["data.source=[/tmp/a,s3://b/c]"], "an element of the data.source list"),
        (["data.source=[s3://a/b,s3://c/d]", f"sagemaker.data_uri=s3://{BUCKET}/x"], "lists 2"),
    ],
)
def test_company_account_mistakes_are_one_line_before_any_call(aws, tmp_path, overrides, message):
    from bincount.errors import BincountError

    with pytest.raises(BincountError, match=re.escape(message)):
        launch_in_process(*BASE, *overrides, tmp_path=tmp_path)
    assert aws.requests == []


def test_environment_takes_new_keys_without_a_plus(aws, tmp_path):
    launch_in_process(
        *BASE, "sagemaker.environment.TEAM_PROXY=http://proxy:3128", tmp_path=tmp_path
    )
    [req] = aws.sagemaker("CreateTrainingJob")
    assert req["Environment"]["TEAM_PROXY"] == "http://proxy:3128"
    # a typo outside the open dict is still refused by Hydra
    with pytest.raises(Exception, match=re.escape("+sagemaker.instance_typ=")):
        launch_in_process(*BASE, "sagemaker.instance_typ=ml.m5.large", tmp_path=tmp_path)


US_EAST = ["sagemaker.region=us-east-1", f"sagemaker.bucket={BUCKET}"]


@pytest.mark.long
def test_data_bucket_sends_a_manifest_of_the_listed_ids(aws, tmp_path):
    """data=bucket: the seed's 10,441 ids of the public bucket's ~536k photos, as a manifest
    channel (File mode: FastFile takes prefixes only), and a volume sized for the copy."""
    import boto3

    from bincount.data.sources import seed_ids

    lines = []
    launch_in_process(
        *US_EAST,
        "sagemaker.instance_type=ml.m5.xlarge",
        "data=bucket",
        "sagemaker.volume_size_gb=5",
        tmp_path=tmp_path,
        echo=lines.append,
    )
    [req] = aws.sagemaker("CreateTrainingJob")
    data = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "data")
    source = data["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile" and data["InputMode"] == "File"
    key = source["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    manifest = json.loads(s3_read(key))
    assert manifest[0] == {"prefix": "s3://aft-vbi-pds/"}
    ids = seed_ids()
    assert len(manifest) - 1 == 2 * len(ids) == 2 * 10441
    assert {f"bin-images/{i}.jpg" for i in ids} | {f"metadata/{i}.json" for i in ids} == set(
        manifest[1:]
    )
    assert req["ResourceConfig"]["VolumeSizeInGB"] == 31  # 30 + 10,441 x 75 kB, rounded up
    assert any("raised to 31" in line for line in lines)
    # data.counts narrows the manifest to the photos the run reads
    aws.clear()
    launch_in_process(*US_EAST, "data=bucket", "data.counts=[1,2]", tmp_path=tmp_path)
    [req] = aws.sagemaker("CreateTrainingJob")
    uri = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "data")
    key = uri["DataSource"]["S3DataSource"]["S3Uri"].split(f"s3://{BUCKET}/", 1)[1]
    assert len(json.loads(s3_read(key))) - 1 == 2 * (1228 + 2299)
    assert boto3  # (the manifest is read back from moto's S3 above)
    # the dry run says what each channel copies
    lines.clear()
    launch_in_process(*US_EAST, "data=bucket", "dry_run=true", tmp_path=tmp_path, echo=lines.append)
    assert any(
        line.startswith("channel data (File): a manifest of 10,441 photos under s3://aft-vbi-pds/")
        for line in lines
    )


@pytest.mark.parametrize(
    ("overrides", "numbers"),
    [
        (["data=bucket", "sagemaker.data_channel=prefix"], ["536,434 photos", "10,441 of them"]),
        (["data.source=s3://aft-vbi-pds"], ["all 536,434 photos", "~40 GB"]),
    ],
)
def test_a_copy_of_the_whole_bucket_is_refused_with_the_numbers(aws, tmp_path, overrides, numbers):
    from bincount.errors import BincountError

    with pytest.raises(BincountError) as e:
        launch_in_process(*US_EAST, *overrides, "sagemaker.input_mode=File", tmp_path=tmp_path)
    for number in numbers:
        assert number in str(e.value)
    assert aws.requests == []
    # FastFile streams only what the run reads: the prefix channel is fine there
    launch_in_process(*US_EAST, *overrides, tmp_path=tmp_path)
    [req] = aws.sagemaker("CreateTrainingJob")
    data = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "data")
    assert data["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"


def test_a_list_of_sources_is_one_channel_each(aws, tmp_path):
    sources = f"data.source=[s3://{BUCKET}/abid,{{path:s3://{BUCKET}/abid-224,squashed:true}}]"
    base = [o for o in BASE if not o.startswith("data.source=")]
    launch_in_process(*base, sources, tmp_path=tmp_path)
    [req] = aws.sagemaker("CreateTrainingJob")
    uris = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]
    }
    assert uris["data"] == f"s3://{BUCKET}/abid/" and uris["data1"] == f"s3://{BUCKET}/abid-224/"
    assert json.loads(req["Environment"]["BINCOUNT_DATA_CHANNELS"]) == [
        {"channel": "data", "squashed": False},
        {"channel": "data1", "squashed": True},
    ]


@pytest.mark.long
def test_weights_travel_as_a_channel_uploaded_once(aws, tmp_path):
    import hashlib

    weights = tmp_path / "r50.pth"
    weights.write_bytes(b"not really a state dict")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    for attempt in range(2):
        aws.clear()
        launch_in_process(
            *BASE, "model=resnet50", f"model.net.weights={weights}", tmp_path=tmp_path
        )
        [req] = aws.sagemaker("CreateTrainingJob")
        channel = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "weights")
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        assert uri == f"s3://{BUCKET}/bincount/weights/{digest}/r50.pth"
        assert req["Environment"]["BINCOUNT_WEIGHTS_FILE"] == "r50.pth"
        puts = [r for r in aws.requests if r.method == "PUT" and "/weights/" in r.path]
        assert len(puts) == (1 if attempt == 0 else 0)  # the second launch finds it there
    assert s3_read(f"bincount/weights/{digest}/r50.pth") == weights.read_bytes()
    # an s3:// file is checked before the job is created
    from bincount.errors import BincountError

    aws.clear()
    with pytest.raises(BincountError, match="does not exist"):
        launch_in_process(*BASE, f"model.net.weights=s3://{BUCKET}/nope/r50.pth", tmp_path=tmp_path)
    assert aws.sagemaker("CreateTrainingJob") == []
    launch_in_process(
        *BASE,
        f"model.net.weights=s3://{BUCKET}/bincount/weights/{digest}/r50.pth",
        tmp_path=tmp_path,
    )
    assert aws.sagemaker("CreateTrainingJob")
