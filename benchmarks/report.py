"""How every benchmark reports: a titled Markdown table (plus notes), printed and optionally
written as JSON for `benchmarks/run_all.py` to gather into one page."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
import bincount  # noqa: E402, F401  (sets the CPU thread policy before anything loads torch)


def markdown(section: dict) -> str:
    """`{"title", "columns", "rows", "notes"}` -> a Markdown section."""
    lines = [f"### {section['title']}", ""]
    if section.get("command"):
        lines += [f"`{section['command']}`", ""]
    cols = section["columns"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("| " + " | ".join("---" for _ in cols) + " |")
    for row in section["rows"]:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    lines.append("")
    for note in section.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def emit(sections: list[dict], json_path: str | None) -> None:
    for section in sections:
        print(markdown(section), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(sections, indent=1))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load}"
    )


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux: VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def child(script: str, args: list[str], env: dict[str, str]) -> dict:
    """Run `script args` in a fresh process with `env` added (settings that must be there before
    torch loads, e.g. OMP_WAIT_POLICY) and return the JSON object it prints last."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name(script)), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"{script} {args} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])
