"""`bincount compare DIR [DIR...]`: the runs of sweeps or run folders side by side (a table
sorted by the objective, and plots)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bincount.argtypes import whole

EXAMPLES = """examples:
  bincount compare outputs/multirun/2026-11-25/10-00-00      # a sweep
  bincount compare outputs/2026-11-25 outputs/multirun        # every run below these folders
  bincount compare outputs/multirun/<date>/<time> -o /tmp/cmp --top 10

Writes compare.md, compare.html and PNGs (objective against lr, learning curves of the best
runs, the sweep's progress) to <first DIR>/compare unless -o is given."""


def run(args) -> int:
    from bincount.reports import compare

    runs = compare.collect(args.dirs)
    base = compare.common_base(args.dirs)  # runs are named by their path below it
    rows = [compare.row(r, base) for r in runs.done[: args.top or None]]
    print(f"{len(runs.done)} runs, by {runs.metric} ({runs.direction}), best first:")
    print(compare.table_text(rows))
    for p in runs.crashed:
        print(f"crashed or still running (no metrics.json): {p}", file=sys.stderr)
    for p in runs.empty:
        print(f"no runs in {p} (no folder with config.yaml)", file=sys.stderr)
    out = Path(args.output) if args.output else compare.default_output(args.dirs)
    written = compare.write(runs, out, base)
    print(f"report: {out / 'compare.html'} ({len(written)} files)")
    return 0


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "compare",
        help="compare runs and sweeps: a table sorted by the objective, and plots",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run, multirun or outputs folders")
    p.add_argument("-o", "--output", help="folder for the report (default: <first DIR>/compare)")
    p.add_argument("--top", type=whole(0), default=0, help="print only the best N runs (0: all)")
    return {"compare": p}
