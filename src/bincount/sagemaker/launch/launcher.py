"""`python launch_sagemaker.py OVERRIDES`: the composed launch config -> a SageMaker job.

Order: split the overrides (training ones become one hyperparameter), build and check the job
(errors before any call), estimate the cost, build the source bundle, then run the SDK: for
real, or with dry_run=true stopped at botocore (capture.py) and the request printed and
validated. The launch folder's requests.json holds the requests as botocore received them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bincount.config import project_root
from bincount.fileio import atomic_write_json
from bincount.sagemaker.launch import bundle, capture, overrides, spec, wheels


@dataclass
class Launch:
    spec: spec.JobSpec
    requests: dict
    bundle: bundle.Bundle
    job_name: str | None  # None on a dry run


def _training_config_text(cfg: DictConfig) -> str:
    """The YAML of what the job trains (the launch config minus the launcher's own nodes),
    unresolved: enough to see which loggers and callbacks it uses."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg, resolve=False)
    for key in ("sagemaker", "sweep", "hydra"):
        node.pop(key, None)
    return OmegaConf.to_yaml(OmegaConf.create(node))


def channel_lines(job: spec.JobSpec) -> list[str]:
    """One line per input channel: what the job copies or streams."""
    lines = []
    for c in job.inputs.channels:
        mode = c.input_mode or job.input_mode
        if c.data_type == "ManifestFile":
            what = f"a manifest of {c.photos:,} photos under {c.uri} ({c.source_uri()})"
        elif c.local_file is not None:
            what = f"{c.local_file}, uploaded to {c.uri}"
        else:
            what = c.uri
        lines.append(f"channel {c.name} ({mode}): {what}")
    return lines


def launch(
    cfg: DictConfig,
    task_overrides: list[str],
    run_dir: Path,
    echo: Callable[[str], None] = print,
) -> Launch:
    from bincount.sagemaker.launch.submit import sdk_installed, submit

    sdk_installed()  # one clear line without the extra, before anything else
    run_dir = Path(run_dir)
    split = overrides.split(task_overrides)
    launch_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    job = spec.build(cfg, split, launch_id)
    for warning in job.warnings:
        echo(f"warning: {warning}")
    built = bundle.build(
        project_root(),
        run_dir / "bundle",
        keep_image_torch=job.keep_image_torch,
        optional=bundle.needed_by(_training_config_text(cfg)),
        target=wheels.target_of(job.image_uri) if bundle.wants_wheels(cfg.sagemaker) else None,
        log=echo,
    )
    if built.target:
        mb = built.wheel_bytes() / 1e6
        echo(f"offline bundle: {len(built.wheels)} wheels ({mb:.0f} MB) for {built.target}")
    estimate = job.estimate()
    kind = "tuning job" if job.space else "training job"
    dry = bool(cfg.get("dry_run"))
    recorder = capture.Capture(dry_run=dry)
    record: dict = {"launch_id": launch_id, "overrides": list(task_overrides)}
    if not dry:
        echo("\n".join(estimate.lines()))
    try:
        name = submit(job, built.path, recorder)
    finally:  # what the SDK sent (or would have), as botocore received it
        calls = {op: params for op, params in recorder.calls}
        record["requests"] = json.loads(json.dumps(calls, default=str))
        record["job_name"] = None if dry else recorder.job_name()
        atomic_write_json(run_dir / "requests.json", record)
    requests = record["requests"]
    if dry:
        echo(f"dry run: the {kind} the SDK would create (captured in botocore, nothing sent)")
        echo(json.dumps(requests, indent=2, default=str))
        for op, params in requests.items():
            problems = capture.validate(op, params)
            verdict = "valid" if not problems else "INVALID: " + "; ".join(problems)
            echo(f"{op}: {verdict} against botocore's SageMaker service model")
        for line in channel_lines(job):
            echo(line)
        echo(f"source bundle ({len(built.files)} files): {built.path}")
        for line in recorder.upload_summary():
            echo(line)
        echo("\n".join(estimate.lines()))
        return Launch(job, requests, built, None)
    record["job_name"] = name
    atomic_write_json(run_dir / "requests.json", record)
    from bincount.sagemaker.launch.submit import console_url, logs_command

    echo(f"submitted {kind} {name}")
    echo(f"  console: {console_url(job.region, name, bool(job.space))}")
    echo(f"  logs:    {logs_command(job.region, name)}")
    if job.space:
        echo(
            f"  status:  aws sagemaker describe-hyper-parameter-tuning-job "
            f"--hyper-parameter-tuning-job-name {name} --region {job.region}"
        )
    echo(f"  results: bincount pull {name}   (trials, metrics, the best, into local run folders)")
    trial = "<trial>" if job.space else name
    echo(f"  model:   {job.output_uri()}/{trial}/output/model.tar.gz")
    return Launch(job, requests, built, name)
