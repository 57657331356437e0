"""`bincount cleanup`: list what this project made in AWS (tagged bincount:project=bincount) and,
with --yes, stop or delete it. Without --yes nothing changes (a dry run; no prompt).

Kinds: endpoints with their endpoint configs and models (the default); running training and
tuning jobs (--jobs: stopped); the S3 prefixes of the tagged jobs' source bundles, outputs and
checkpoints whose newest object is older than --older-than (--s3); --all-tagged: all three, S3
of any age unless --older-than is given."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}
DEFAULT_AGE = "7d"


def age(text: str) -> timedelta:
    """7d, 12h, 30m, 2w, 0 (a bare number is days)."""
    m = _AGE.fullmatch(text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: use e.g. 7d, 12h, 30m or 0")
    return timedelta(**{_UNIT[m[2]]: float(m[1])})


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "cleanup",
        help="list (and with --yes stop or delete) this project's SageMaker endpoints, jobs "
        "and S3 prefixes",
        description=__doc__,
    )
    p.add_argument("--endpoint", metavar="NAME", help="only this endpoint, its config and model")
    p.add_argument("--jobs", action="store_true", help="running training and tuning jobs")
    p.add_argument(
        "--s3", action="store_true", help="S3 prefixes of the jobs' bundles, outputs, checkpoints"
    )
    p.add_argument(
        "--older-than",
        type=age,
        metavar="AGE",
        help=f"S3 prefixes whose newest object is older than this (implies --s3; default "
        f"{DEFAULT_AGE}; with --all-tagged: any age)",
    )
    p.add_argument(
        "--all-tagged", action="store_true", help="endpoints, running jobs and S3 prefixes"
    )
    p.add_argument("--region", help="AWS region (default: deploy.region, AWS_REGION, profile)")
    p.add_argument("--yes", action="store_true", help="stop and delete (without: only list)")
    return {"cleanup": p}


def _found(sm, args) -> tuple[list, list]:
    from bincount.sagemaker.launch import cleanup

    if args.endpoint:
        return cleanup.endpoint_resources(sm, args.endpoint)
    everything = args.all_tagged
    args.s3 = args.s3 or args.older_than is not None  # an age is about S3 prefixes
    found, kept = [], []
    if everything or not (args.jobs or args.s3):
        found += cleanup.project_resources(sm)
    if everything or args.jobs or args.s3:
        jobs = cleanup.tagged_jobs(sm)
        if everything or args.jobs:
            found += cleanup.running(jobs)
        if everything or args.s3:
            older = args.older_than
            if older is None:
                older = timedelta(0) if everything else age(DEFAULT_AGE)
            s3 = cleanup.client(sm.meta.region_name, "s3")
            old, recent = cleanup.s3_prefixes(s3, cleanup.job_prefixes(sm, jobs), older)
            found += old
            kept += [(r, f"newer than {older}") for r in recent]
    return found, kept


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from bincount.errors import BincountError
    from bincount.sagemaker.launch import cleanup

    sm = cleanup.client(args.region)
    try:
        found, kept = _found(sm, args)
        kept = [k if isinstance(k, tuple) else (k, f"not tagged {cleanup.TAG_TEXT}") for k in kept]
        if not found:
            print(f"nothing tagged {cleanup.TAG_TEXT} to remove in {sm.meta.region_name}")
            for resource, why in kept:
                print(f"  {resource}  (kept: {why})")
            return 0
        print(f"in {sm.meta.region_name}:")
        for resource in found:
            print(f"  {resource}")
        for resource, why in kept:
            print(f"  {resource}  (kept: {why})")
        if not args.yes:
            print(f"dry run: nothing stopped or deleted; add --yes to remove these {len(found)}")
            return 0
        s3 = cleanup.client(sm.meta.region_name, "s3")
        for line in cleanup.delete(sm, found, s3):
            print(line)
    except (ClientError, BotoCoreError) as e:
        raise BincountError(f"AWS call failed: {e} (check credentials and region)") from None
    return 0
