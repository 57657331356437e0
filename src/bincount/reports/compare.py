"""`bincount compare`: the runs of one or more folders side by side.

Any folder below the given ones with a config.yaml (or, for a sweep trial that failed before
writing one, a Hydra job folder) is a run (`bincount.reports.trials`). Runs with a metrics.json
are ranked by a metric (the objective unless `--metric`), the best marked, with the command that
trains it again; the others are listed with the line that says why they failed.

The table's columns: every config key that varies among the runs (the swept keys, config groups
such as `model`, and the main settings), then the metrics (or `--columns`). Numbers keep one
format per column: metrics with 4 decimals, a config value with 3 significant digits.

Writes compare.md (+ PNGs) and compare.html: the table, the metric against lr (log axis)
coloured by batch size, the learning curves of the best runs, and the sweeps' progress (runs by
start time, the best so far).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes, atomic_write_text
from bincount.reports import document as doc
from bincount.reports import trials as tr
from bincount.reports.run_plots import _figure, _png
from bincount.reports.run_report import Run, load_run

MINIMIZED = re.compile(r"loss|rmse|mae|error", re.I)
METRICS = ["val/acc", "val/macro_acc", "test/acc", "test/macro_acc", "test/rmse"]
#: columns that are neither a config key nor a metric
OWN = ("run", "objective", "epochs", "time", "started")
MARK = "*"


@dataclass
class Runs:
    done: list[tr.Trial]  # with metrics.json, ranked by `metric`, best first
    failed: list[tr.Trial]  # without: failed (error line) or still running
    empty: list[Path]  # given folders with no run in them
    metric: str  # what ranks them: the objective's name, or --metric
    direction: str  # maximize | minimize
    varying: list[str]  # config keys whose value differs among the runs
    loaded: dict[Path, Run] = field(default_factory=dict)  # series for the plots

    @property
    def best(self) -> tr.Trial | None:
        return self.done[0] if self.done and value(self.done[0], self.metric) is not None else None


# ------------------------------------------------------------------ reading


def _order(run: Path) -> tuple:
    """Hydra's job number for multirun folders, else the folder's path."""
    return (0, int(run.name), "") if run.name.isdigit() else (1, 0, str(run))


def value(t: tr.Trial, name: str) -> float | None:
    """A metric of a finished run: the objective (also by its own name: the kept epoch's value),
    else from metrics.json's val and test blocks."""
    m = t.metrics or {}
    objective = m.get("objective") or {}
    if name == "objective" or name == objective.get("name"):
        v = objective.get("value")
    else:
        v = (m.get("val") or {}).get(name, (m.get("test") or {}).get(name, m.get(name)))
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def objective(t: tr.Trial) -> float | None:
    return value(t, "objective")


def metric_names(done: list[tr.Trial]) -> list[str]:
    names: dict[str, None] = {}
    for t in done:
        m = t.metrics or {}
        for block in ("val", "test"):
            names.update(dict.fromkeys(k for k, v in (m.get(block) or {}).items() if _number(v)))
    return list(names)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _direction(done: list[tr.Trial], metric: str, objective_name: str | None) -> str:
    if metric in ("objective", objective_name):
        for t in done:
            d = ((t.config.get("sweep") or {}).get("objective") or {}).get("direction")
            if d in ("maximize", "minimize"):
                return d
            if t.config.get("optimized_mode") == "min":  # not the default: said on purpose
                return "minimize"
    return "minimize" if MINIMIZED.search(metric) else "maximize"


def s3_refused(folder: str) -> BincountError:
    job = [p for p in folder.split("://", 1)[1].split("/") if p][-1:] or ["JOB_NAME"]
    return BincountError(
        f"{folder} is on S3: pull the runs first with `bincount pull JOB_NAME` (the training "
        f"or tuning job's name, e.g. `bincount pull {job[0]}`), then compare the folder it writes"
    )


def collect(folders: list[str | Path], metric: str | None = None) -> Runs:
    done: list[tr.Trial] = []
    failed: list[tr.Trial] = []
    empty: list[Path] = []
    for given in folders:
        if "://" in str(given):
            raise s3_refused(str(given))
        f = Path(given)
        if not f.is_dir():
            raise BincountError(f"{f} is not a folder: pass run or multirun folders (outputs/...)")
        dirs = sorted(tr.find(f.resolve()), key=_order)
        if not dirs:
            empty.append(f)
        for d in dirs:
            t = tr.read(d)
            (done if t.metrics is not None else failed).append(t)
    if not done:
        said = [f"{p}: no runs (no folder with config.yaml)" for p in empty]
        said += [f"{t.path}: {why(t)}" for t in failed]
        raise BincountError(
            "nothing to compare: " + "; ".join(said) + ". Pass folders that `python train.py` "
            "(or `-m`) wrote, e.g. outputs/multirun/<date>/<time>"
        )
    names = {(t.metrics.get("objective") or {}).get("name") for t in done} - {None}
    objective_name = sorted(names)[0] if len(names) == 1 else None
    if metric is None or metric == "objective":
        metric = objective_name or "objective"
    elif not any(value(t, metric) is not None for t in done):
        known = ", ".join(["objective", *metric_names(done)])
        raise BincountError(f"--metric {metric}: no run has it; use one of {known}")
    direction = _direction(done, metric, objective_name)
    sign = -1 if direction == "maximize" else 1
    done.sort(key=lambda t: (value(t, metric) is None, sign * (value(t, metric) or 0.0)))
    runs = Runs(done, failed, empty, metric, direction, tr.varying(done + failed))
    runs.loaded = {t.path: load_run(t.path) for t in done}
    return runs


def why(t: tr.Trial) -> str:
    return t.error or "crashed or still running (no metrics.json, no error.txt)"


# ------------------------------------------------------------------ naming


def name(t: tr.Trial | Run, base: Path | None = None) -> str:
    if base is not None:
        try:
            return str(t.path.relative_to(base)) or t.path.name
        except ValueError:
            pass
    return t.path.name


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


def reproduce(t: tr.Trial, runs: Runs) -> str:
    """The command that trains `t` again: its command line, or (not recorded, e.g. a SageMaker
    job) the settings that vary and the main ones, from its config.yaml."""
    if t.overrides is not None:
        return tr.reproduce(t.overrides)
    keys = [k for k in dict.fromkeys([*runs.varying, *tr.MAIN]) if tr.setting(t, k) is not None]
    said = [f"{k}={_plain(tr.setting(t, k))}" for k in keys]
    return tr.reproduce(said) + "  # from config.yaml: the command line was not recorded"


def _plain(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "null" if v is None else str(v)


# ------------------------------------------------------------------ the table


def columns(runs: Runs, wanted: list[str] | None = None) -> list[str]:
    """The table's columns: `wanted` (--columns), else the keys that vary (or the main ones when
    none does), the metric, the usual metrics that any run has, epochs and time."""
    if wanted:
        known = set(OWN) | set(metric_names(runs.done)) | {runs.metric}
        for c in wanted:
            everyone = runs.done + runs.failed
            if c not in known and all(tr.setting(t, c) is None for t in everyone):
                raise BincountError(
                    f"--columns {c}: no run has it; use config keys (lr, model.net.head, ...), "
                    f"metrics ({', '.join(['objective', *metric_names(runs.done)])}) or "
                    f"{', '.join(OWN)}"
                )
        return ["run", *(c for c in wanted if c != "run")]
    keys = runs.varying or [k for k in tr.MAIN[:4] if any(tr.setting(t, k) for t in runs.done)]
    shown = ["objective"] if runs.metric in _objective_names(runs) else ["objective", runs.metric]
    shown += [m for m in METRICS if m not in shown and any(value(t, m) for t in runs.done)]
    return ["run", *keys, *shown, "epochs", "time"]


def _objective_names(runs: Runs) -> set[str]:
    return {"objective"} | {(t.metrics.get("objective") or {}).get("name") for t in runs.done}


def _is_metric(column: str, runs: Runs) -> bool:
    return column == "objective" or column == runs.metric or "/" in column


def cell(t: tr.Trial, column: str, runs: Runs, base: Path | None):
    """The raw value of a column for one run."""
    m = t.metrics or {}
    if column == "run":
        return name(t, base)
    if column == "epochs":
        return m.get("epochs", tr.setting(t, "trainer.max_epochs"))
    if column == "time":
        return m.get("seconds")
    if column == "started":
        return t.started
    if _is_metric(column, runs):
        return value(t, column)
    return tr.setting(t, column)


def _float_format(values: list) -> str:
    floats = [abs(v) for v in values if isinstance(v, float) and v != 0 and math.isfinite(v)]
    if floats and (min(floats) < 1e-3 or max(floats) >= 1e5):
        return "{:.2e}"
    return "{:.3g}"


def formatter(column: str, values: list, runs: Runs):
    """One format for every value of a column."""
    if column == "time":
        return lambda v: f"{v:.0f}s" if _number(v) else "-"
    if column == "started":
        from datetime import datetime

        return lambda v: datetime.fromtimestamp(v).strftime("%Y-%m-%d %H:%M:%S") if v else "-"
    metric = _is_metric(column, runs)
    fmt = _float_format(values)

    def text(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return f"{v:.4f}" if metric else fmt.format(v)
        return str(v)

    return text


def sort_runs(runs: Runs, key: str | None, base: Path | None) -> list[tr.Trial]:
    """The finished runs in table order: by `key` (`COLUMN[:asc|:desc]`), else by the metric,
    best first. Metrics sort best first, other columns ascending; runs without a value last."""
    if not key:
        return list(runs.done)
    column, _, way = key.partition(":")
    if way not in ("", "asc", "desc"):
        raise BincountError(f"--sort {key}: add :asc or :desc, or nothing (e.g. --sort lr:desc)")
    if all(cell(t, column, runs, base) is None for t in runs.done):
        raise BincountError(
            f"--sort {column}: no run has it; sort by a column of the table (run, lr, "
            f"{runs.metric}, time, ...) or any config key or metric"
        )
    if not way and column in _objective_names(runs) | {runs.metric}:
        way = "desc" if runs.direction == "maximize" else "asc"
    elif not way and _is_metric(column, runs):  # best first
        way = "asc" if MINIMIZED.search(column) else "desc"

    def order(t: tr.Trial):
        v = cell(t, column, runs, base)
        return (0, v, "") if _number(v) else (1, 0, str(v))

    present = [t for t in runs.done if cell(t, column, runs, base) is not None]
    missing = [t for t in runs.done if cell(t, column, runs, base) is None]
    return sorted(present, key=order, reverse=way == "desc") + missing


def table(
    runs: Runs, base: Path | None, wanted: list[str] | None = None, sort: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, rows of text): the first column marks the best run."""
    cols = columns(runs, wanted)
    ordered = sort_runs(runs, sort, base)
    raw = [[cell(t, c, runs, base) for c in cols] for t in ordered]
    formats = [formatter(c, [r[i] for r in raw], runs) for i, c in enumerate(cols)]
    best = runs.best
    rows = [
        [MARK if t is best else "", *(f(v) for f, v in zip(formats, r, strict=True))]
        for t, r in zip(ordered, raw, strict=True)
    ]
    return ["", *cols], rows


def table_text(header: list[str], rows: list[list[str]]) -> str:
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([lines[0], rule, *lines[1:]])


def failed_lines(runs: Runs, base: Path | None) -> list[str]:
    """One line per run not compared: its name, what varies, why."""
    out = []
    for t in runs.failed:
        said = " ".join(f"{k}={_plain(tr.setting(t, k))}" for k in runs.varying)
        out.append(f"{name(t, base)}{' (' + said + ')' if said else ''}: {why(t)}")
    return out


def best_lines(runs: Runs, base: Path | None) -> list[str]:
    best = runs.best
    if best is None:
        return []
    v = value(best, runs.metric)
    return [
        f"best: {name(best, base)}  {runs.metric}={v:.4f} ({runs.direction})",
        f"reproduce: {reproduce(best, runs)}",
    ]


# ------------------------------------------------------------------ plots


def metric_vs_lr(runs: Runs) -> bytes | None:
    points = [
        (tr.setting(t, "lr"), value(t, runs.metric), tr.setting(t, "batch_size")) for t in runs.done
    ]
    points = [p for p in points if _number(p[0]) and p[0] > 0 and p[1] is not None]
    if not points:
        return None
    fig = _figure(6, 4)
    ax = fig.subplots()
    sizes = sorted({p[2] for p in points}, key=lambda b: (b is None, str(b)))
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


def learning_curves(runs: Runs, top: int = 3, base: Path | None = None) -> bytes | None:
    best = [runs.loaded[t.path] for t in runs.done[:top] if runs.loaded[t.path].series]
    if not best:
        return None
    fig = _figure(10, 3.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for i, r in enumerate(best):
        # by epoch, not by step: runs with different batch sizes line up
        label, colour, epoch = name(r, base), f"C{i}", r.epochs
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


def by_start(runs: Runs) -> list[tr.Trial]:
    """The finished runs with a value, in the order they started (across sweeps)."""
    scored = [t for t in runs.done if value(t, runs.metric) is not None]
    return sorted(scored, key=lambda t: (t.started, str(t.path)))


def progress(runs: Runs, base: Path | None = None) -> bytes | None:
    ordered = by_start(runs)
    if len(ordered) < 2:
        return None
    values = [value(t, runs.metric) for t in ordered]
    pick = max if runs.direction == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    xs = list(range(len(values)))
    sweeps = list(dict.fromkeys(name(t, base).rpartition("/")[0] or "." for t in ordered))
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    for i, sweep in enumerate(sweeps):
        mine = [
            (x, v)
            for x, t, v in zip(xs, ordered, values, strict=True)
            if (name(t, base).rpartition("/")[0] or ".") == sweep
        ]
        label = f"trial of {sweep}" if len(sweeps) > 1 else "trial"
        ax.plot(*zip(*mine, strict=True), "o", color=f"C{i}", label=label)
    ax.step(xs, best, where="post", color="black", label=f"best so far ({runs.direction})")
    ax.set(xlabel="run, in the order they started", ylabel=runs.metric, title="sweep progress")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ------------------------------------------------------------------ report


def blocks(
    runs: Runs,
    pics: dict[str, bytes],
    base: Path | None,
    wanted: list[str] | None = None,
    sort: str | None = None,
) -> list[doc.Block]:
    header, rows = table(runs, base, wanted, sort)
    order = f"sorted by {sort}" if sort else "best first"
    out: list[doc.Block] = [
        doc.Heading(f"{len(runs.done)} runs compared", 1),
        doc.Text(f"Ranked by {runs.metric} ({runs.direction}), {order}; {MARK}: the best run."),
        doc.Table(header, rows),
    ]
    best = best_lines(runs, base)
    if best:
        out += [doc.Heading("Best run"), doc.Items(best)]
    problems = failed_lines(runs, base) + [f"{p}: no runs in this folder" for p in runs.empty]
    if problems:
        out += [doc.Heading("Not compared (failed or still running)"), doc.Items(problems)]
    titles = {
        "metric_vs_lr.png": f"{runs.metric} against lr",
        "learning_curves.png": "learning curves of the best runs",
        "progress.png": "sweep progress (runs by start time)",
    }
    for file, title in titles.items():
        if file in pics:
            out += [doc.Heading(title[0].upper() + title[1:]), doc.Picture(file, title)]
    return out


def write(
    runs: Runs,
    out: Path,
    base: Path | None = None,
    wanted: list[str] | None = None,
    sort: str | None = None,
) -> list[Path]:
    """compare.md, compare.html and the PNGs in `out`; returns the written files."""
    out.mkdir(parents=True, exist_ok=True)
    made = {
        "metric_vs_lr.png": metric_vs_lr(runs),
        "learning_curves.png": learning_curves(runs, base=base),
        "progress.png": progress(runs, base),
    }
    pics = {k: v for k, v in made.items() if v}
    written = [atomic_write_bytes(out / k, v) for k, v in pics.items()]
    parts = blocks(runs, pics, base, wanted, sort)
    written.append(atomic_write_text(out / "compare.md", doc.markdown(parts)))
    written.append(atomic_write_text(out / "compare.html", doc.to_html(parts, "compare", pics)))
    return written
