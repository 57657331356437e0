"""`bincount pull JOB_OR_TUNING_JOB`: a SageMaker job's trials (status, objective, final
metrics, failure reason, from SageMaker's own records) downloaded into local run folders, the
best one named with its overrides and the command that reproduces it."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  bincount pull bincount-hpo-k3x9-261202012345          # a tuning job: one run folder a trial
  bincount pull bincount-k3x9-20261202012345 -o runs/cloud1
  bincount pull bincount-hpo-k3x9-261202012345 --list   # the records only, nothing downloaded

Then: bincount compare DIR; tensorboard --logdir DIR; bincount evaluate DIR/<trial>;
bincount serve DIR/<trial>."""

SHOWN_METRICS = ("val/acc", "val/macro_acc", "val/loss", "test/acc")


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _table(pulled) -> list[str]:
    shown = [m for m in SHOWN_METRICS if m != pulled.metric]
    head = ["trial (* best)", "status", pulled.metric or "objective", *shown, "tuned"]
    rows = [head]
    for t in pulled.trials:
        mark = " *" if pulled.best is t else ""
        tuned = " ".join(f"{k}={v}" for k, v in sorted(t.tuned.items()))
        rows.append(
            [
                t.name + mark,
                t.status,
                _num(t.objective),
                *(_num(t.final_metrics.get(m)) for m in shown),
                tuned or "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def run(args) -> int:
    import logging
    from pathlib import Path

    from bincount.sagemaker.launch import pull
    from bincount.sagemaker.launch.region import resolve

    for noisy in ("botocore", "boto3"):  # "Found credentials in environment variables."
        logging.getLogger(noisy).setLevel(logging.WARNING)
    region = resolve(args.region)
    pulled = pull.pull(args.job, region, Path(args.output) if args.output else None, not args.list)
    print(f"{pulled.kind} {pulled.name}: {pulled.status}, {len(pulled.trials)} trial(s)")
    for line in _table(pulled):
        print(f"  {line}")
    for t in pulled.trials:
        if t.failure_reason:
            reason = " | ".join(x.strip() for x in t.failure_reason.splitlines() if x.strip())
            print(f"  {t.name} failed: {reason}")
    best = pulled.best
    if best is not None:
        value = f" ({pulled.metric}={best.objective:.4f})" if best.objective is not None else ""
        print(f"best: {best.name}{value}")
        print(f"  overrides: {' '.join(best.overrides()) or '(none)'}")
        print(f"  reproduce: {best.reproduce()}")
    if args.list:
        return 0
    runs = pull.runs_found(pulled)
    print(f"{len(runs)} run folder(s) in {pulled.dest}")
    events = sum(len(t.tensorboard_events) for t in pulled.trials)
    if events:
        print(f"  {events} TensorBoard event file(s) streamed to S3 during the job(s)")
    print(f"  compare: bincount compare {pulled.dest}")
    print(f"  tensorboard --logdir {pulled.dest}")
    if best is not None and best.folder:
        print(f"  serve the best: bincount serve {best.folder}")
    return 0


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "pull",
        help="a SageMaker training or tuning job's trials into local run folders",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", metavar="JOB_OR_TUNING_JOB", help="a training or tuning job's name")
    p.add_argument(
        "-o", "--output", help="folder for the run folders (default: outputs/sagemaker/<job>)"
    )
    p.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, profile)")
    p.add_argument("--list", action="store_true", help="list the trials, download nothing")
    return {"pull": p}
