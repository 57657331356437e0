"""`bincount compare`: the runs of one or more folders side by side.

A run folder holds config.yaml, metrics.json and csv/metrics.csv (what `python train.py`
writes); a multirun folder holds numbered run folders, a date folder holds time folders: any
folder below the given ones that has a config.yaml is a run. A run with no metrics.json
crashed (or is still running): it is listed as such, and the others are compared.

Writes compare.md (+ PNGs) and compare.html: a table sorted by the objective, the objective
against lr (log axis) coloured by batch size, the learning curves of the best runs, and the
sweep's progress (objective per trial in launch order, and the best so far).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bincount import rundir
from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes, atomic_write_text
from bincount.reports import document as doc
from bincount.reports.run_plots import _figure, _png
from bincount.reports.run_report import Run, load_run

SKIP = {rundir.CHECKPOINTS, "csv", "tensorboard", "wandb", ".hydra", "compare", "onnx"}
MINIMIZED = re.compile(r"loss|rmse|mae|error", re.I)
HEADER = [
    "run",
    "model",
    "lr",
    "batch",
    "epochs",
    "objective",
    "val/acc",
    "val/macro_acc",
    "test/acc",
    "test/macro_acc",
    "RMSE",
    "time",
]


@dataclass
class Runs:
    done: list[Run]  # sorted best first
    crashed: list[Path]
    empty: list[Path]  # given folders with no run in them
    metric: str
    direction: str


def find_run_dirs(folder: Path) -> list[Path]:
    """Every folder at or below `folder` with a config.yaml (not descending into runs)."""
    found = []
    for here, dirs, files in os.walk(folder):
        if rundir.CONFIG in files:
            found.append(Path(here))
            dirs.clear()
        else:
            dirs[:] = sorted(d for d in dirs if d not in SKIP)
    return found


def _order(run: Path) -> tuple:
    """Launch order: Hydra's job number for multirun folders, else the folder's time."""
    return (0, int(run.name), "") if run.name.isdigit() else (1, 0, str(run))


def objective(run: Run) -> float | None:
    value = (run.metrics.get("objective") or {}).get("value")
    return float(value) if isinstance(value, int | float) else None


def _direction(runs: list[Run], metric: str) -> str:
    for r in runs:
        d = ((r.config.get("sweep") or {}).get("objective") or {}).get("direction")
        if d in ("maximize", "minimize"):
            return d
    return "minimize" if MINIMIZED.search(metric) else "maximize"


def collect(folders: list[str | Path]) -> Runs:
    done: list[Run] = []
    crashed: list[Path] = []
    empty: list[Path] = []
    for f in map(Path, folders):
        if not f.is_dir():
            raise BincountError(f"{f} is not a folder: pass run or multirun folders (outputs/...)")
        dirs = sorted(find_run_dirs(f.resolve()), key=_order)
        if not dirs:
            empty.append(f)
        for d in dirs:
            if rundir.metrics_path(d).is_file():
                done.append(load_run(d))
            else:
                crashed.append(d)
    if not done:
        said = [f"{p}: no runs (no folder with config.yaml)" for p in empty]
        said += [f"{p}: crashed or still running (no metrics.json)" for p in crashed]
        raise BincountError(
            "nothing to compare: " + "; ".join(said) + ". Pass folders that `python train.py` "
            "(or `-m`) wrote, e.g. outputs/multirun/<date>/<time>"
        )
    names = {(r.metrics.get("objective") or {}).get("name") for r in done} - {None}
    metric = sorted(names)[0] if len(names) == 1 else ("/".join(sorted(names)) or "objective")
    direction = _direction(done, metric)
    sign = -1 if direction == "maximize" else 1
    ranked = sorted(done, key=lambda r: (objective(r) is None, sign * (objective(r) or 0.0)))
    return Runs(ranked, crashed, empty, metric, direction)


def _get(d: dict, dotted: str):
    for part in dotted.split("/") if "/" in dotted else dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def name(run: Run, base: Path | None = None) -> str:
    if base is not None:
        try:
            return str(run.path.relative_to(base)) or run.path.name
        except ValueError:
            pass
    return run.path.name


def common_base(folders: list[str | Path]) -> Path:
    """The folder that runs are named below: the given folders' common parent."""
    given = [Path(d).resolve() for d in folders]
    base = Path(os.path.commonpath(given))
    if len(given) > 1 and base in set(given):
        base = base.parent
    return base


def default_output(folders: list[str | Path]) -> Path:
    """Where the report goes without -o: `<first folder>/compare`."""
    return Path(folders[0]) / "compare"


def row(run: Run, base: Path | None = None) -> list:
    m, c = run.metrics, run.config
    test = m.get("test") or {}
    val = m.get("val") or {}
    seconds = m.get("seconds")
    return [
        name(run, base),
        _get(c, "model.backbone") or "?",
        _get(c, "lr"),
        _get(c, "batch_size"),
        m.get("epochs", _get(c, "trainer.max_epochs")),
        objective(run),
        val.get("val/acc"),
        val.get("val/macro_acc"),
        test.get("test/acc"),
        test.get("test/macro_acc"),
        test.get("test/rmse"),
        f"{seconds:.0f}s" if isinstance(seconds, int | float) else "",
    ]


def _text(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 0.01 else f"{v:.4f}"
    return str(v)


def table_text(rows: list[list]) -> str:
    cells = [HEADER, *[[_text(v) for v in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADER))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


# ------------------------------------------------------------------ plots


def objective_vs_lr(runs: Runs) -> bytes | None:
    points = [(_get(r.config, "lr"), objective(r), _get(r.config, "batch_size")) for r in runs.done]
    points = [p for p in points if isinstance(p[0], int | float) and p[0] > 0 and p[1] is not None]
    if not points:
        return None
    fig = _figure(6, 4)
    ax = fig.subplots()
    sizes = sorted({p[2] for p in points}, key=lambda b: (b is None, b))
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    for i, b in enumerate(sizes):
        xs = [p[0] for p in points if p[2] == b]
        ys = [p[1] for p in points if p[2] == b]
        colour = cmap(i / max(1, len(sizes) - 1))
        ax.scatter(xs, ys, color=colour, label=f"batch {b}", s=40, edgecolor="black")
    ax.set_xscale("log")
    ax.set(xlabel="lr (log scale)", ylabel=runs.metric, title=f"{runs.metric} against lr")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def _epochs(run: Run) -> dict[int, float]:
    """step -> epoch (1-based, at its end) from csv/metrics.csv: runs with different batch
    sizes line up by epoch, not by step."""
    path = run.path / "csv" / "metrics.csv"
    out: dict[int, float] = {}
    if path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    out[int(float(row["step"]))] = float(row["epoch"]) + 1
                except (KeyError, TypeError, ValueError):
                    continue
    return out


def learning_curves(runs: Runs, top: int = 3, base: Path | None = None) -> bytes | None:
    best = [r for r in runs.done[:top] if r.series]
    if not best:
        return None
    fig = _figure(10, 3.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for i, r in enumerate(best):
        label, colour, epoch = name(r, base), f"C{i}", _epochs(r)
        for key, ax, style in (
            ("val/loss", loss_ax, dict(marker="o")),
            ("train/loss_epoch", loss_ax, dict(ls="--", marker="x", alpha=0.7)),
            ("val/acc", acc_ax, dict(marker="o")),
        ):
            points = [(epoch.get(s), v) for s, v in r.series.get(key, []) if s in epoch]
            if points:
                xs, ys = zip(*points, strict=True)
                tag = label if key != "train/loss_epoch" else f"{label} train"
                ax.plot(xs, ys, color=colour, label=tag, **style)
    loss_ax.set(title=f"loss of the best {len(best)} runs (dashed: train)", xlabel="epoch")
    acc_ax.set(title="val/acc", xlabel="epoch", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=8)
    return _png(fig)


def progress(runs: Runs) -> bytes | None:
    ordered = sorted(
        (r for r in runs.done if objective(r) is not None), key=lambda r: _order(r.path)
    )
    if len(ordered) < 2:
        return None
    values = [objective(r) for r in ordered]
    pick = max if runs.direction == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    xs = list(range(len(values)))
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    ax.plot(xs, values, "o", label="trial")
    ax.step(xs, best, where="post", label=f"best so far ({runs.direction})")
    ax.set(xlabel="trial (launch order)", ylabel=runs.metric, title="sweep progress")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ------------------------------------------------------------------ report


def blocks(runs: Runs, pics: dict[str, bytes], base: Path | None) -> list[doc.Block]:
    out: list[doc.Block] = [
        doc.Heading(f"{len(runs.done)} runs compared", 1),
        doc.Text(f"Sorted by {runs.metric} ({runs.direction}), best first."),
        doc.Table(HEADER, [[_text(v) for v in row(r, base)] for r in runs.done]),
    ]
    problems = [f"{p}: crashed or still running (no metrics.json)" for p in runs.crashed]
    problems += [f"{p}: no runs in this folder" for p in runs.empty]
    if problems:
        out += [doc.Heading("Not compared"), doc.Items(problems)]
    titles = {
        "objective_vs_lr.png": "objective against lr",
        "learning_curves.png": "learning curves of the best runs",
        "progress.png": "sweep progress",
    }
    for file, title in titles.items():
        if file in pics:
            out += [doc.Heading(title.capitalize()), doc.Picture(file, title)]
    return out


def write(runs: Runs, out: Path, base: Path | None = None) -> list[Path]:
    """compare.md, compare.html and the PNGs in `out`; returns the written files."""
    out.mkdir(parents=True, exist_ok=True)
    made = {
        "objective_vs_lr.png": objective_vs_lr(runs),
        "learning_curves.png": learning_curves(runs, base=base),
        "progress.png": progress(runs),
    }
    pics = {k: v for k, v in made.items() if v}
    written = [atomic_write_bytes(out / k, v) for k, v in pics.items()]
    parts = blocks(runs, pics, base)
    written.append(atomic_write_text(out / "compare.md", doc.markdown(parts)))
    written.append(atomic_write_text(out / "compare.html", doc.to_html(parts, "compare", pics)))
    return written
