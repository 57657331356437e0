"""`bincount report RUN`: one run's report (learning curves, gradient norms, health verdicts,
time split, recommendations) as HTML or Markdown + PNGs."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  bincount report outputs/2026-11-25/06-20-00                  # -> <run>/report.html
  bincount report outputs/2026-11-25/06-20-00 --format md      # -> report.md + report_files/
  bincount report outputs/<run> -o /tmp/run.html

Health rules and the time split appear for runs trained with debug=health / debug=profile
(or debug=[health,profile])."""


def run(args) -> int:
    from bincount.reports.run_report import write_report

    path = write_report(args.run, fmt=args.format, out=args.output)
    print(path)
    return 0


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "report",
        help="write a run's report (HTML, or Markdown + PNGs)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="the run folder, e.g. outputs/<date>/<time>")
    p.add_argument(
        "--format", choices=["html", "md"], default="html", help="html, or md (Markdown + PNGs)"
    )
    p.add_argument("-o", "--output", help="where to write (default: <run>/report.<format>)")
    return {"report": p}
