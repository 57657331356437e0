"""A failed job explains itself: the container writes SageMaker's failure file for any error
(through AWS's own container scripts), and a launch that waits on a failed job prints one line
with the reason, the console URL and the logs command."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import container_harness as harness
import pytest
import sm_moto
from hydra import compose, initialize_config_dir

from bincount.config import config_dir, project_root
from bincount.errors import BincountError
from bincount.sagemaker.container import failure
from bincount.sagemaker.launch.launcher import launch
from bincount.sagemaker.launch.submit import (
    TRAINING_NAME_MAX,
    TUNING_NAME_MAX,
    training_base_name,
    tuning_job_name,
)

BASE, TINY = sm_moto.BASE, sm_moto.TINY


@pytest.mark.long
def test_a_job_failing_on_an_override_names_the_error_and_the_override(
    aws, tmp_path, tiny_source, monkeypatch
):
    overrides = [*TINY, "trainer.max_epochs=1", "+trainer.bogus_arg=1"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=[*BASE, *overrides])
    name = launch(cfg, [*BASE, *overrides], tmp_path / "launch", echo=lambda s: None).job_name
    [request] = aws.sagemaker("CreateTrainingJob")
    container = harness.training_job(
        request, tmp_path / "opt-ml", tiny_source, aws.env, job_name=name
    )
    code = container.run(timeout=600)
    log = container.output()
    assert code != 0
    assert "Running Basic Script driver" in log  # AWS's driver ran it (and wrote no failure)
    reason = container.failure()
    assert reason is not None, log[-4000:]
    first = reason.splitlines()[0]
    assert first.startswith("TypeError: ") and "bogus_arg" in first, reason
    assert "caused by the override +trainer.bogus_arg=1" in reason
    assert " in " in reason.splitlines()[2]  # the last frames: file:line in function
    assert len(reason) <= failure.MAX_CHARS
    assert "Traceback" in log  # the whole traceback stays in the job's log

    # A launch that waits on a job SageMaker records as failed with that reason.
    sm_moto.fail_new_training_jobs(monkeypatch, reason)
    proc = subprocess.run(
        [
            sys.executable,
            str(project_root() / "launch_sagemaker.py"),
            *overrides,
            *BASE,
            "sagemaker.wait=true",
            f"hydra.run.dir={tmp_path / 'launch2'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said, said[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    [job] = [r["TrainingJobName"] for r in aws.sagemaker("CreateTrainingJob")[1:]]
    line = errors[0]
    print(reason, line, sep="\n")  # what SageMaker and the user see (pytest -s)
    assert f"the training job {job} failed: TypeError: " in line
    assert "caused by the override +trainer.bogus_arg=1" in line
    assert f"console.aws.amazon.com/sagemaker/home?region={sm_moto.REGION}#/jobs/{job}" in line
    assert (
        f"aws logs tail /aws/sagemaker/TrainingJobs --log-stream-name-prefix {job} --follow" in line
    )


def test_the_failure_reason_names_the_innermost_error_and_the_override(tmp_path):
    def trainer(**kwargs):
        raise TypeError(
            f"Trainer.__init__() got an unexpected keyword argument '{next(iter(kwargs))}'"
        )

    try:
        try:
            trainer(bogus_arg=1)
        except TypeError as e:
            raise RuntimeError("Error in call to target 'Trainer'\nfull_key: trainer") from e
    except RuntimeError as e:
        text = failure.describe(e, ["lr=0.1", "+trainer.bogus_arg=1"])
        env = {"SM_OUTPUT_DIR": str(tmp_path)}
        assert failure.write(e, ["+trainer.bogus_arg=1"], env) == tmp_path / "failure"
        assert failure.write(e, [], env) is None  # AWS's rule: the first writer wins
    lines = text.splitlines()
    assert lines[0].startswith("TypeError: Trainer.__init__() got an unexpected keyword")
    assert lines[1] == "caused by the override +trainer.bogus_arg=1"
    assert lines[2].startswith("at test_failure.py:") and "in trainer" in lines[2]
    assert lines[3] == "(raised as RuntimeError)"
    assert failure.describe(BincountError("no data"), []) == "bincount: no data"
    assert failure.write(ValueError("x"), [], {}) is None  # outside SageMaker: nothing


def test_job_names_are_unique_to_the_second_and_random_within_the_limits():
    long = "a-very-long-project-name-for-its-jobs-that-goes-on-and-on-and-on"
    tuning = tuning_job_name(long, now=0)
    assert len(tuning) <= TUNING_NAME_MAX and tuning.endswith("-700101000000")
    assert len(training_base_name(long)) + len("-20261202012345") <= TRAINING_NAME_MAX
    names = {tuning_job_name("bincount", now=0) for _ in range(20)}
    assert len(names) == 20  # the same second, 20 names
    name = tuning_job_name("bincount", rand="k3x9", now=0)
    assert name == "bincount-hpo-k3x9-700101000000"
    assert training_base_name("my_proj", rand="k3x9") == "my-proj-k3x9"


@pytest.mark.parametrize("objective", ["val/macro_acc", "val/loss"])
def test_the_dry_run_sends_a_definition_for_the_objective(aws, tmp_path, objective):
    overrides = [*BASE, "+sweep=hpo", f"optimized_metric={objective}", "dry_run=true"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=overrides)
    lines = []
    result = launch(cfg, overrides, tmp_path / "launch", echo=lines.append)
    request = result.requests["CreateHyperParameterTuningJob"]
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"]["MetricName"] == objective
    names = [
        m["Name"]
        for m in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    ]
    assert objective in names
    assert (
        "CreateHyperParameterTuningJob: valid against botocore's SageMaker service model" in lines
    )


def test_an_objective_no_definition_reads_is_refused_in_one_line(aws, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(project_root() / "launch_sagemaker.py"),
            "+sweep=hpo",
            "optimized_metric=val/acc_count_3",
            "dry_run=true",
            *BASE,
            f"hydra.run.dir={tmp_path / 'launch'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: the tuning objective val/acc_count_3 is not a figure the trainer prints"
        )
    )
    assert "val/macro_acc" in proc.stderr and "Traceback" not in proc.stderr
    assert aws.requests == []


def test_sagemaker_managed_mlflow_adds_its_plugin_only_when_asked(tmp_path):
    from bincount.config import project_root
    from bincount.sagemaker.launch import bundle

    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"
    asked = bundle.needed_by(
        f"logger:\n  mlflow:\n    _target_: x.MLFlowLogger\n    tracking_uri: {arn}\n"
    )
    assert asked == {"mlflow-skinny", "sagemaker-mlflow"}
    text = bundle.requirements(project_root(), optional=asked)
    assert "sagemaker-mlflow==0.5.0" in text.splitlines()[-1]
    plain = bundle.requirements(project_root(), optional={"mlflow-skinny"})
    assert "sagemaker-mlflow" not in plain
    assert "sagemaker-mlflow" not in bundle.requirements(project_root(), optional=None)


def test_the_override_blamed_is_the_one_the_innermost_error_names():
    try:
        try:
            raise TypeError("Trainer.__init__() got an unexpected keyword argument 'bogus_arg'")
        except TypeError as e:
            raise RuntimeError("Error in call to target 'Trainer'\nfull_key: trainer") from e
    except RuntimeError as e:
        overrides = ["+trainer.bogus_arg=1", "trainer=cpu"]
        assert failure.culprit(e, overrides) == "+trainer.bogus_arg=1"
        assert failure.culprit(e, ["trainer=cpu"]) == "trainer=cpu"  # Hydra's full_key
        assert failure.culprit(e, ["lr=0.1"]) is None


def test_a_bogus_trainer_argument_is_traced_to_where_bincount_builds_the_trainer(make_cfg):
    from bincount.training.fit import _trainer

    cfg = make_cfg("+trainer.bogus_arg=1")
    with pytest.raises(Exception) as caught:
        _trainer(cfg, [], [])
    text = failure.describe(caught.value, ["lr=0.01", "+trainer.bogus_arg=1"])
    first, cause, where, raised = text.splitlines()
    assert first.startswith("TypeError: ") and "'bogus_arg'" in first
    assert cause == "caused by the override +trainer.bogus_arg=1"
    assert re.search(r"<- fit\.py:\d+ in _trainer$", where), where
    assert raised == "(raised as InstantiationException)"
