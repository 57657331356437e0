"""`bincount compare DIR [DIR...]`: the runs of sweeps or run folders side by side: a column for
every config key that varies among them, ranked by the objective (or --metric), the best marked
with the command that trains it again, failed runs listed with their error; and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from bincount.argtypes import whole

EXAMPLES = """examples:
  bincount compare outputs/multirun/2026-11-25/10-00-00      # a sweep
  bincount compare outputs/2026-11-25 outputs/multirun        # every run below these folders
  bincount compare outputs/multirun/<date>/<time> --metric val/macro_acc --sort lr
  bincount compare outputs/multirun/<date>/<time> --columns lr,model.net.head,val/acc,test/acc
  bincount compare outputs/multirun/<date>/<time> -o /tmp/cmp --top 10

Runs on S3 (a SageMaker job's): `bincount pull JOB_NAME` first, then compare its folder.
Writes compare.md, compare.html and PNGs (the metric against lr, learning curves of the best
runs, progress of the sweeps by start time) to <first DIR>/compare unless -o is given."""


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def run(args) -> int:
    from bincount.reports import compare

    runs = compare.collect(args.dirs, metric=args.metric)
    base = compare.common_base(args.dirs)  # runs are named by their path below it
    header, rows = compare.table(runs, base, args.columns, args.sort)
    order = f"sorted by {args.sort}" if args.sort else "best first"
    print(f"{len(runs.done)} runs, by {runs.metric} ({runs.direction}), {order}; * = best:")
    print(compare.table_text(header, rows[: args.top or None]))
    print()
    for line in compare.best_lines(runs, base):
        print(line)
    failed = compare.failed_lines(runs, base)
    if failed:
        print(f"{len(failed)} not compared (failed or still running):")
        for line in failed:
            print(f"  {line}")
    for p in runs.empty:
        print(f"no runs in {p} (no folder with config.yaml)")
    out = Path(args.output) if args.output else compare.default_output(args.dirs)
    written = compare.write(runs, out, base, args.columns, args.sort)
    print(f"report: {out / 'compare.html'} ({len(written)} files)")
    return 0


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "compare",
        help="compare runs and sweeps: what varies, ranked, the best and how to reproduce it",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run, multirun or outputs folders")
    p.add_argument("-o", "--output", help="folder for the report (default: <first DIR>/compare)")
    p.add_argument("--top", type=whole(0), default=0, help="print only the first N rows (0: all)")
    p.add_argument(
        "--metric",
        help="rank by this metric and mark its best run (default: the objective), "
        "e.g. val/macro_acc, test/acc, test/rmse",
    )
    p.add_argument(
        "--sort",
        metavar="COLUMN[:asc|:desc]",
        help="order the table by a column, a config key or a metric (default: the metric, best "
        "first; metrics sort best first, other columns ascending), e.g. lr or lr:desc",
    )
    p.add_argument(
        "--columns",
        type=_names,
        metavar="A,B,...",
        help="show these columns instead (after run): config keys, metrics, objective, epochs, "
        "time, started; e.g. lr,model.net.head,val/acc,test/acc",
    )
    return {"compare": p}
