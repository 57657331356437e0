"""`bincount deploy MODEL`: a SageMaker endpoint serving the model (real-time or serverless)."""

from __future__ import annotations


def register(sub) -> dict:
    p = sub.add_parser(
        "deploy",
        help="deploy a run (or a training job's model.tar.gz) to a SageMaker endpoint",
        description="Pack the model with bincount's inference module, upload it, and create a "
        "SageMaker model, endpoint config and endpoint (all tagged bincount:project, so "
        "`bincount cleanup --endpoint NAME` removes them). Defaults: deploy: in conf/serve.yaml.",
    )
    p.add_argument(
        "source",
        metavar="MODEL",
        help="a run folder or a checkpoint, or a training job's s3://.../model.tar.gz",
    )
    p.add_argument("--name", help="endpoint name (default bincount-<run>-<time>)")
    p.add_argument("--s3-prefix", help="where to upload the packed model (s3://BUCKET/PREFIX)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--serverless",
        action="store_true",
        default=None,
        help="a serverless endpoint (deploy.serverless_memory_mb, serverless_max_concurrency)",
    )
    kind.add_argument("--instance-type", help="real-time endpoint on this instance type")
    p.add_argument("--role", help="IAM role ARN for the endpoint ($SAGEMAKER_ROLE)")
    p.add_argument("--wait", action="store_true", help="wait until the endpoint is InService")
    p.add_argument("--region", help="AWS region (default: deploy.region, AWS_REGION, profile)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the requests the SDK would send (captured in botocore, nothing sent)",
    )
    return {"deploy": p}


def run(args) -> int:
    from bincount.sagemaker.launch.deploy import deploy
    from bincount.settings import settings

    out = deploy(
        args.source,
        name=args.name,
        s3_prefix=args.s3_prefix,
        settings=settings()["deploy"],
        serverless=True if args.serverless else (False if args.instance_type else None),
        instance_type=args.instance_type,
        role=args.role,
        wait=args.wait,
        region=args.region,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        return _print_dry_run(out)
    where = "serverless" if out["serverless"] else out["instance_type"]
    print(
        f"endpoint {out['endpoint']} ({where}, {out['region']}) from {out['model_data']}\n"
        f"  query:    bincount predict --endpoint {out['endpoint']} bin.jpg\n"
        f"  clean up: bincount cleanup --endpoint {out['endpoint']}"
    )
    return 0


def _print_dry_run(out: dict) -> int:
    import json

    from bincount.sagemaker.launch.capture import validate

    print(f"dry run: endpoint {out['endpoint']} (captured in botocore, nothing sent)")
    print(json.dumps(out["requests"], indent=2, default=str))
    for op, params in out["requests"].items():
        problems = validate(op, params)
        verdict = "valid" if not problems else "INVALID: " + "; ".join(problems)
        print(f"{op}: {verdict} against botocore's SageMaker service model")
    return 0
