"""Peak memory of a real training run of the default model (the server's: bench_infer.py).

    .venv/bin/python benchmarks/bench_memory.py [--batches 3] [--json OUT]

Runs `python train.py 'debug=[limit,profile]' trainer.max_epochs=1 test=false` (the default
model and data, 224 px, batch 32, --batches training batches, 2 validation batches) in its
own process and reads the peak memory its `debug=profile` callback recorded (profile.json):
the training process's RSS, its DataLoader workers' RSS and PSS (PSS counts the pages they
share with the trainer once), and the process's lifetime peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import ROOT, emit


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--with-cache", action="store_true", help="also with data.resized_cache")
    p.add_argument("--json")
    args = p.parse_args(argv)
    (ROOT / "outputs").mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as tmp:
        variants = [("draft decode", [])]
        if args.with_cache:
            variants.append(("resized cache", ["data.resized_cache=true"]))
        for label, extra in variants:
            run = Path(tmp) / label.replace(" ", "-")
            start = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "train.py"),
                    "debug=[limit,profile]",
                    "trainer.max_epochs=1",
                    f"trainer.limit_train_batches={args.batches}",
                    "test=false",
                    f"hydra.run.dir={run}",
                    *extra,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode:
                raise SystemExit(f"training failed:\n{proc.stderr[-3000:]}")
            memory = json.loads((run / "profile.json").read_text())["memory"]
            rows.append(
                {
                    "run": f"training, {label}",
                    "trainer peak RSS MB": memory["peak_rss_mb"],
                    "workers peak RSS MB": memory["workers_peak_rss_mb"],
                    "workers peak PSS MB": memory.get("workers_peak_pss_mb", ""),
                    "lifetime peak RSS MB": memory.get("process_lifetime_peak_rss_mb", ""),
                    "seconds": f"{time.perf_counter() - start:.0f}",
                }
            )
    sections = [
        {
            "title": "Memory of training (EfficientNet-Lite0, 224 px, batch 32, 2 workers)",
            "command": "benchmarks/bench_memory.py",
            "columns": [
                "run",
                "trainer peak RSS MB",
                "workers peak RSS MB",
                "workers peak PSS MB",
                "lifetime peak RSS MB",
                "seconds",
            ],
            "rows": rows,
            "notes": [
                f"`python train.py 'debug=[limit,profile]' trainer.max_epochs=1 "
                f"trainer.limit_train_batches={args.batches} test=false`, read from profile.json",
                "with --with-cache: the resized cache is memory-mapped, its pages are the page "
                "cache's, shared by the workers (in RSS once touched, in PSS split between them)",
            ],
        }
    ]
    emit(sections, args.json)
    return sections


if __name__ == "__main__":
    main()
