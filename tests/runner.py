"""Run `python train.py` as a user would (a module, not conftest: several conftest.py exist,
so `from conftest import ...` would pick whichever was imported first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bincount.config import project_root

ROOT = project_root()


def run_train(*overrides: str, cwd: Path | None = None, env: dict | None = None, timeout=600):
    """Run `python train.py` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_smoke(source: Path, base: Path, *overrides: str):
    """A real run of experiment=smoke (EfficientNet-Lite0, 96 px) of `source` in `base`/run,
    with `overrides`; returns (run folder, CompletedProcess) after checking it succeeded."""
    run = base / "run"
    proc = run_train(
        "experiment=smoke",
        f"data.source={source}",
        f"paths.data_dir={base / 'data'}",
        f"hydra.run.dir={run}",
        "data.num_workers=0",
        *overrides,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc


def run_tiny(source: Path, base: Path, *overrides: str):
    """A tiny real run (experiment=smoke, no test split) of `source` in `base`/run, with
    `overrides`; returns (run folder, CompletedProcess) after checking it succeeded."""
    return run_smoke(source, base, "test=false", *overrides)


def run_small(source: Path, base: Path, *overrides: str):
    """A small real run (experiment=smoke, 2 epochs, with its test stage) of `source` in
    `base`/run, with `overrides`; returns (run folder, CompletedProcess) after checking it
    succeeded."""
    return run_smoke(source, base, "trainer.max_epochs=2", *overrides)
