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
