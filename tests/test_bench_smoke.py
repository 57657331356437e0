"""The benchmark scripts start and the report renders (their figures are never asserted:
timings belong in the benchmarks' own output, not in tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bincount.config import project_root

BENCH = project_root() / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name.startswith(("bench_", "run_all")))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_starts(script):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_markdown_table():
    sys.path.insert(0, str(BENCH))
    try:
        from report import markdown, ratio
    finally:
        sys.path.remove(str(BENCH))
    text = markdown(
        {
            "title": "T",
            "command": "benchmarks/x.py",
            "columns": ["a", "b"],
            "rows": [{"a": 1, "b": ratio(3.0, 2.0)}, {"a": 2}],
            "notes": ["n"],
        }
    )
    assert text.splitlines() == [
        "### T",
        "",
        "`benchmarks/x.py`",
        "",
        "| a | b |",
        "| --- | --- |",
        "| 1 | 1.50x |",
        "| 2 |  |",
        "",
        "- n",
    ]
