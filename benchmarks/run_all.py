"""Every benchmark of the Performance section, one after the other, into one Markdown page.

    .venv/bin/python benchmarks/run_all.py [--out benchmarks/RESULTS.md]     (= make bench)

Runs bench_pipeline, bench_train_step, bench_infer, bench_head_sweep and bench_memory, each in
its own process with its default (short) settings, and writes their tables with the date, the
machine, the load average before and after, and each one's wall time. The cores are shared:
read the ratios, measured within one run, rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import ROOT, machine, markdown

# Short settings: the whole run must stay under 15 minutes on 2 shared cores.
BENCHES = [
    ("bench_pipeline.py", ["--images", "120", "--batches", "5", "--steps", "2"]),
    ("bench_train_step.py", ["--steps", "2", "--loop-steps", "5", "--rounds", "2"]),
    ("bench_infer.py", ["--images", "30"]),
    ("bench_head_sweep.py", ["--ref-train", "256"]),
    ("bench_memory.py", ["--batches", "2"]),
]
BUDGET = 15 * 60


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--only", nargs="*", help="run only these scripts (e.g. bench_infer.py)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    header = machine()
    parts, timings, failed = [], [], []
    for script, extra in BENCHES:
        if args.only and script not in args.only:
            continue
        print(f"== {script}", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).with_name(script)), *extra, "--json", out.name],
                cwd=ROOT,
                stdout=sys.stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
            seconds = time.perf_counter() - start
            timings.append((script, seconds))
            if proc.returncode:
                failed.append(script)
                parts.append(
                    f"### {script}\n\nFAILED ({proc.returncode}):\n\n    "
                    + "\n    ".join(proc.stderr.strip().splitlines()[-15:])
                    + "\n"
                )
                continue
            parts += [markdown(s) for s in json.loads(Path(out.name).read_text())]
    total = time.perf_counter() - started
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"`make bench` ({'all' if not args.only else ', '.join(args.only)}) on {now}",
        "",
        f"- machine: {header}; load average at the end {load}",
        f"- wall time: {total / 60:.1f} min ("
        + ", ".join(f"{s} {t:.0f} s" for s, t in timings)
        + f"); budget {BUDGET // 60} min: "
        + ("within" if total <= BUDGET else "OVER"),
        "",
        *parts,
    ]
    Path(args.out).write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out} in {total / 60:.1f} min" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
