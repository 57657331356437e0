"""`bincount orders MODEL`: an order stream for a run's split; `bincount verify MODEL ORDERS`:
photo-only and order-aware verdicts on it, side by side when the answer key is there."""

from __future__ import annotations

import argparse
from pathlib import Path

from bincount.argtypes import fraction, positive_int


def register(sub) -> dict:
    o = sub.add_parser(
        "orders",
        help="write an order stream (stated line items and total) for a run's split",
        description="One order per photo of the run's split, stating the line items of its "
        "metadata (products, dimensions, weights, a quantity each) and a total; a share "
        "(--mismatch-rate) carries one picker error (a unit missing or extra on a line, a line "
        "missing, a line from another bin), applied to the stated order only. Writes JSON "
        "lines to --output and the answer key to <name>.truth.jsonl beside it (for scoring "
        "only: `bincount verify` never reads it to decide); with a .csv output, a flat list "
        "(id, path, count, expected) for `bincount predict MODEL FILE --expected-column expected`.",
    )
    o.add_argument("run", metavar="MODEL", help="run folder whose split (config.yaml) is used")
    o.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="which split (test)"
    )
    o.add_argument(
        "--mismatch-rate", type=fraction, default=0.2, help="share of wrong orders (0.2)"
    )
    o.add_argument("--seed", type=int, default=0, help="seed of the stream (0)")
    o.add_argument(
        "-o", "--output", default="orders.jsonl", help="file to write (orders.jsonl; or .csv)"
    )
    o.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the former name

    v = sub.add_parser(
        "verify",
        help="verdicts (photo-only and order-aware) for an order file",
        description="For each order of ORDERS (written by `bincount orders`), predict its "
        "photo and answer match/mismatch/unsure twice: photo-only (the calibrated probability "
        "of the stated total) and order-aware (the verifier `bincount calibrate` fitted on "
        "validation orders: P(order is right) from the photo's counts and the stated lines). "
        "Writes one JSON line per order to --output; with the answer key (--truth, or "
        "<name>.truth.jsonl beside ORDERS), prints both verdicts' precision side by side.",
    )
    v.add_argument("model", metavar="MODEL", help="calibrated run folder or checkpoint")
    v.add_argument("orders", metavar="ORDERS", help="orders.jsonl from `bincount orders`")
    v.add_argument(
        "-o", "--output", default="verdicts.jsonl", help="verdicts to write (verdicts.jsonl)"
    )
    v.add_argument("--truth", help="answer key to score with (default: <ORDERS>.truth.jsonl)")
    v.add_argument("--backend", choices=("torch", "onnx"), help="local backend (torch)")
    v.add_argument(
        "--batch-size", type=positive_int, default=16, help="photos per forward pass (16)"
    )
    return {"orders": o, "verify": v}


def run_orders(args) -> int:
    from bincount.errors import BincountError
    from bincount.fileio import check_output
    from bincount.verify import check

    if not 0.0 <= args.mismatch_rate <= 1.0:
        raise BincountError(f"--mismatch-rate {args.mismatch_rate} must be between 0 and 1")
    check_output(args.output, "-o")
    paths, pairs = check.write_stream(
        Path(args.run), args.split, Path(args.output), args.mismatch_rate, args.seed
    )
    wrong = sum(t.wrong for _, t in pairs)
    print(f"{len(pairs)} {args.split} orders, {wrong} wrong -> {', '.join(map(str, paths))}")
    return 0


def run_verify(args) -> int:
    from bincount.errors import BincountError
    from bincount.fileio import check_input, check_output
    from bincount.verify import check, orders

    truth = Path(args.truth) if args.truth else orders.truth_path(Path(args.orders))
    if args.truth and not truth.exists():
        raise BincountError(f"--truth {truth} does not exist")
    check_output(args.output, "-o")  # before the model loads
    check_input(args.model, "MODEL", folder_ok=True)
    rows = check.verify(
        args.model, Path(args.orders), Path(args.output), args.backend, args.batch_size
    )
    print(f"verified {len(rows)} orders -> {args.output}")
    if args.truth or truth.is_file():
        _print_table(check.score(rows, orders.read_truth(truth)))
    return 0


def _print_table(tables: dict) -> None:
    def pct(x) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    first = next(iter(tables.values()))
    print(f"{first['orders']:.0f} orders, {first['wrong_orders']:.0f} wrong")
    print(
        "| verdict | decided | match precision | mismatch precision | wrong orders caught "
        "| ECE of P(right) |\n| --- | --- | --- | --- | --- | --- |"
    )
    for name, t in tables.items():
        print(
            f"| {name} | {pct(t['decided'])} | {pct(t['match_precision'])} | "
            f"{pct(t['mismatch_precision'])} | {pct(t['mismatch_recall'])} | {t['ece']:.3f} |"
        )
