"""`python launch_sagemaker.py OVERRIDES`: the composed launch config -> a SageMaker job.

Order: split the overrides (training ones become hyperparameters), build and check the job
(errors before any call), estimate the cost, build the source bundle, record the requests in
the launch folder, then submit (or, with dry_run=true, print and stop).
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
from bincount.sagemaker import bundle, overrides, spec


@dataclass
class Launch:
    spec: spec.JobSpec
    requests: dict
    bundle: bundle.Bundle
    job_name: str | None  # None on a dry run


def launch(
    cfg: DictConfig,
    task_overrides: list[str],
    run_dir: Path,
    echo: Callable[[str], None] = print,
) -> Launch:
    run_dir = Path(run_dir)
    split = overrides.split(task_overrides)
    launch_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    job = spec.build(cfg, split, launch_id)
    for warning in job.warnings:
        echo(f"warning: {warning}")
    built = bundle.build(project_root(), run_dir / "bundle", keep_image_torch=job.keep_image_torch)
    requests = job.requests()
    estimate = job.estimate()
    record = {"launch_id": launch_id, "overrides": list(task_overrides), "requests": requests}
    atomic_write_json(run_dir / "requests.json", record)
    kind = "tuning job" if job.space else "training job"
    if cfg.get("dry_run"):
        echo(f"dry run: the {kind} that would be submitted (nothing was called)")
        echo(json.dumps(requests, indent=2))
        echo(f"source bundle ({len(built.files)} files): {built.path}")
        echo("\n".join(estimate.lines()))
        return Launch(job, requests, built, None)
    echo("\n".join(estimate.lines()))
    from bincount.sagemaker.submit import submit

    name = submit(job, built.path)
    record["job_name"] = name
    atomic_write_json(run_dir / "requests.json", record)
    console = f"https://{job.region}.console.aws.amazon.com/sagemaker/home?region={job.region}#/"
    where = "hyper-tuning-jobs" if job.space else "jobs"
    echo(f"submitted {kind} {name}")
    echo(f"  console: {console}{where}/{name}")
    if not job.space:
        echo(
            f"  logs:    aws logs tail /aws/sagemaker/TrainingJobs --log-stream-name-prefix "
            f"{name} --follow --region {job.region}"
        )
    trial = "<trial>" if job.space else name
    echo(f"  model:   {job.output_uri()}/{trial}/output/model.tar.gz")
    return Launch(job, requests, built, name)
