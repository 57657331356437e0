"""`bincount cleanup`: list, then delete, the SageMaker endpoints, endpoint configs and models
this project created (tagged bincount:project=bincount), after confirmation or --yes."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "cleanup",
        help="delete this project's SageMaker endpoints, endpoint configs and models",
        description=__doc__,
    )
    p.add_argument("--endpoint", metavar="NAME", help="only this endpoint, its config and model")
    p.add_argument("--region", help="AWS region (default: deploy.region, AWS_REGION, profile)")
    p.add_argument("--yes", action="store_true", help="delete without asking")
    return {"cleanup": p}


def _confirm(count: int) -> bool:
    print(f"delete these {count} resources? [y/N] ", end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from bincount.errors import BincountError
    from bincount.sagemaker import cleanup

    sm = cleanup.client(args.region)
    try:
        kept = []
        if args.endpoint:
            found, kept = cleanup.endpoint_resources(sm, args.endpoint)
        else:
            found = cleanup.project_resources(sm)
        if not found:
            print(f"nothing tagged {cleanup.TAG_TEXT} in {sm.meta.region_name}: nothing to delete")
            return 0
        print(f"in {sm.meta.region_name}:")
        for resource in found:
            print(f"  {resource}")
        for resource in kept:
            print(f"  {resource}  (kept: not tagged {cleanup.TAG_TEXT})")
        if not args.yes and not _confirm(len(found)):
            print("nothing deleted")
            return 1
        for line in cleanup.delete(sm, found):
            print(line)
    except (ClientError, BotoCoreError) as e:
        raise BincountError(f"SageMaker call failed: {e} (check credentials and region)") from None
    return 0
