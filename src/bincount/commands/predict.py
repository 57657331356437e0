"""`bincount predict`: counts (and verdicts) for images, folders, CSV lists, s3 prefixes."""

from __future__ import annotations

import argparse

from bincount.argtypes import positive_int


def register(sub) -> dict:
    p = sub.add_parser(
        "predict",
        help="predict the counts of images (a file, folder, CSV list or s3:// prefix)",
        description="Predict with a run folder, checkpoint or ONNX export (first argument), or "
        "with a deployed endpoint (--endpoint NAME: then every argument is an input). Writes "
        "one row per image to -o (predictions.csv); with --expected-column, also a verdict per "
        "image, and a table of verdicts (with --truth-column, their precision).",
    )
    p.add_argument(
        "args",
        nargs="+",
        metavar="MODEL PATH",
        help="a run folder or a checkpoint (or ONNX export), then images, folders, CSV lists or "
        "s3:// prefixes",
    )
    p.add_argument("-o", "--output", default="predictions.csv", help="CSV to write")
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--endpoint", help="query this SageMaker endpoint instead of a local model")
    p.add_argument("--region", help="the endpoint's AWS region (deploy.region, AWS_REGION...)")
    p.add_argument("--expected-column", help="CSV column with the quantity the order states")
    p.add_argument("--truth-column", help="CSV column with the true count (default: count)")
    p.add_argument("--expected", type=int, help="one expected quantity for every image")
    p.add_argument(
        "--backend", choices=("torch", "onnx"), help="torch, or onnx (`bincount export` first)"
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (16)")
    return {"predict": p}


def run(args) -> int:
    from bincount import batch
    from bincount.fileio import check_input

    if not args.endpoint:
        check_input(args.args[0], "MODEL", folder_ok=True)
    done = batch.predict(
        None if args.endpoint else args.args[0],
        args.args if args.endpoint else args.args[1:],
        args.output,
        endpoint=args.endpoint,
        region=args.region,
        expected=args.expected,
        expected_column=args.expected_column,
        truth_column=args.truth_column,
        backend=args.backend,
        batch_size=args.batch_size,
    )
    items, answers, errors = done.items, done.answers, done.errors
    for note in done.skipped:
        print(note)
    print(f"predicted {len(items) - errors} of {len(items)} images -> {done.path}")
    for item, answer in zip(items, answers, strict=True):
        if "error" in answer:
            print(f"  skipped {item.source}: {answer['error']}")
    if done.table is not None:
        _print_table(done.table)
    if len(items) == 1 and not errors:
        a = answers[0]
        print(f"{items[0].source}: count {a['count']} (confidence {a['confidence']:.3f})")
    return 1 if errors == len(items) else 0


def _print_table(t: dict) -> None:
    def pct(x) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    print(
        f"verdicts on {t['orders']:.0f} orders: {t['match']} match, {t['mismatch']} mismatch, "
        f"{t['unsure']} unsure"
    )
    if "mismatch_precision" in t:
        print(
            f"| orders | wrong orders | flagged mismatch | precision | recall | unsure |\n"
            f"| --- | --- | --- | --- | --- | --- |\n"
            f"| {t['orders']:.0f} | {t['wrong_orders']:.0f} | {t['flagged_mismatch']:.0f} | "
            f"{pct(t['mismatch_precision'])} | {pct(t['mismatch_recall'])} | "
            f"{pct(t['share_unsure'])} |"
        )
