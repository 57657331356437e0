"""The report of one run folder: `bincount report outputs/<run>`.

Reads what the run wrote (config.yaml, csv/metrics.csv, metrics.json, and with debug=health /
debug=profile: health.json, grad_norms.csv, profile.json) and writes one self-contained
report.html (pictures inlined) or report.md with its PNGs beside it in report_files/:
learning curves, per-layer gradient norms over time, the health rules' verdicts, the time
split of a training step, and the top recommendations.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bincount import rundir
from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes, atomic_write_text
from bincount.reports import run_plots

# What debug=health / debug=profile add to a run folder (e.g. for a SageMaker job to keep).
ARTIFACTS = (
    rundir.HEALTH,
    rundir.GRAD_NORMS,
    rundir.PROFILE,
    "fit-lightning_profile.txt",
    "report.html",
    "report.md",
    "report_files",
)

STATUS_ORDER = {"fired": 0, "ok": 1, "too_short": 2, "disabled": 3}
STATUS_TEXT = {
    "fired": "FIRED",
    "ok": "ok",
    "too_short": "not judged (run too short)",
    "disabled": "disabled",
}


@dataclass
class Run:
    path: Path
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # metrics.json
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # csv/metrics.csv
    epochs: dict[int, float] = field(default_factory=dict)  # step -> epoch (1-based, at its end)
    health: dict | None = None
    grads: tuple[list[int], list[str], list[list[float]]] | None = None
    profile: dict | None = None


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BincountError(f"{path} is not valid JSON ({e}): re-run the training") from None


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _read_series(path: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[int, float]]:
    """({figure: [(step, value)]}, {step: epoch (1-based, at its end)}) of csv/metrics.csv."""
    series: dict[str, list[tuple[int, float]]] = {}
    epochs: dict[int, float] = {}
    if not path.is_file():
        return series, epochs
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = _float(row.get("step", ""))
            if step is None:
                continue
            epoch = _float(row.get("epoch", ""))
            if epoch is not None:
                epochs[int(step)] = epoch + 1
            for key, text in row.items():
                v = _float(text) if key not in ("step", "epoch") else None
                if v is not None:
                    series.setdefault(key, []).append((int(step), v))
    return series, epochs


def _read_grads(path: Path):
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return None
    layers = rows[0][4:]
    steps = [int(r[0]) for r in rows[1:]]
    norms = [[_float(v) if _float(v) is not None else math.nan for v in r[4:]] for r in rows[1:]]
    return steps, layers, norms


def load_run(path: str | Path) -> Run:
    run = Path(path)
    if not run.is_dir():
        raise BincountError(
            f"no run folder at {run}: pass a run's folder, e.g. outputs/<date>/<time>"
        )
    known = [rundir.CONFIG, rundir.CSV_METRICS, rundir.METRICS, rundir.HEALTH, rundir.PROFILE]
    if not any((run / k).exists() for k in known):
        raise BincountError(
            f"{run} is not a run folder (none of {', '.join(known)}): pass the folder "
            "`python train.py` printed (outputs/<date>/<time>)"
        )
    config = {}
    cfg = rundir.read_config(run)
    if cfg is not None:
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(cfg) or {}
    series, epochs = _read_series(run / rundir.CSV_METRICS)
    return Run(
        path=run,
        config=config,
        metrics=_read_json(rundir.metrics_path(run)) or {},
        series=series,
        epochs=epochs,
        health=_read_json(run / rundir.HEALTH),
        grads=_read_grads(run / rundir.GRAD_NORMS),
        profile=_read_json(run / rundir.PROFILE),
    )


def recommendations(run: Run, top: int = 5) -> list[str]:
    """Fired rules' fixes (in the order they fired), then the profile's advice."""
    out = []
    if run.health:
        rules = run.health.get("rules", {})
        for name in run.health.get("fired", []):
            rule = rules.get(name, {})
            fired = rule.get("fired", {})
            out.append(
                f"{name} (step {fired.get('step')}): {fired.get('message', '')}. "
                f"Fix: {rule.get('hint', '')}"
            )
    if run.profile:
        out.extend(run.profile.get("advice", []))
    return out[:top]


def _facts(run: Run) -> list[tuple[str, str]]:
    c = run.config
    facts = []
    model = c.get("model", {}) or {}
    data = c.get("data", {}) or {}
    trainer = c.get("trainer", {}) or {}
    if model:
        net = model.get("net") or model  # the network's settings (at `model` before issue 25)
        facts.append(("model", f"{net.get('backbone')} (pretrained={net.get('pretrained')})"))
    if data:
        facts.append(("data", f"{data.get('source')} at {data.get('image_size')} px"))
    for key, value in (
        ("lr", c.get("lr")),
        ("batch_size", c.get("batch_size")),
        ("max_epochs", trainer.get("max_epochs")),
    ):
        if value is not None:
            facts.append((key, str(value)))
    objective = run.metrics.get("objective")
    if objective:
        facts.append((f"best {objective['name']}", f"{objective['value']:.4f}"))
    # metrics.json comes after the report written at the end of testing: fall back on the csv
    test = run.metrics.get("test") or {
        k: v[-1][1] for k, v in run.series.items() if k.startswith("test/") and v
    }
    for key in ("test/acc", "test/rmse", "test/off_by_one"):
        if key in test:
            facts.append((key, f"{test[key]:.4f}"))
    p = run.profile
    if p:
        t = p.get("throughput", {})
        m = p.get("memory", {})
        facts.append(("train images/s", f"{t.get('train_images_per_s')}"))
        if "workers_peak_pss_mb" in m:
            workers = f"{m['workers_peak_pss_mb']} MB workers (PSS)"
        else:
            workers = f"{m.get('workers_peak_rss_mb')} MB workers (RSS)"
        facts.append(("peak memory", f"{m.get('peak_rss_mb')} MB (RSS) + {workers}"))
        cpu = p.get("cpu", {})
        facts.append(("CPU", f"{cpu.get('utilisation_pct')}% of {cpu.get('cores')} cores"))
    return facts


def _verdict_rows(run: Run) -> list[dict]:
    rules = (run.health or {}).get("rules", {})
    rows = []
    for name, r in sorted(rules.items(), key=lambda kv: STATUS_ORDER.get(kv[1]["status"], 9)):
        fired = r.get("fired") or {}
        rows.append(
            {
                "rule": name,
                "status": r["status"],
                "verdict": STATUS_TEXT.get(r["status"], r["status"]),
                "when": f"step {fired['step']}, epoch {fired['epoch']}" if fired else "",
                "evidence": fired.get("message", "")
                or (f"needs {r['needs']}" if r["status"] == "too_short" and r.get("needs") else ""),
                "hint": r.get("hint", "") if fired else "",
            }
        )
    return rows


def _split_rows(run: Run) -> list[tuple[str, str, str]]:
    split = (run.profile or {}).get("split", {})
    return [(k, f"{v['fraction']:.1%}", f"{v['mean_ms']:.1f}") for k, v in split.items()]


def pictures(run: Run) -> dict[str, bytes]:
    out = {
        "learning_curves": run_plots.learning_curves(run.series),
        "grad_norms": run_plots.grad_norms(*run.grads) if run.grads else None,
        "time_split": run_plots.time_split(run.profile) if run.profile else None,
    }
    return {k: v for k, v in out.items() if v}


MISSING = {
    "grad_norms": "No gradient statistics: run with `debug=health` to record them.",
    "time_split": "No profile: run with `debug=profile` (or `debug=[health,profile]`).",
    "learning_curves": "No csv/metrics.csv in this run.",
}

CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1040px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.fired{background:#fde2dd;font-weight:bold}.ok{background:#e3f4e1}
.too_short,.disabled{color:#777}
.rec li{margin:4px 0}img{max-width:100%}.muted{color:#777}
"""


def render_html(run: Run, pics: dict[str, bytes]) -> str:
    e = html.escape

    def img(key: str, alt: str) -> str:
        if key not in pics:
            return f"<p class=muted>{e(MISSING[key])}</p>"
        data = base64.b64encode(pics[key]).decode()
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{data}">'

    parts = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>run report: {e(str(run.path))}</title><style>{CSS}</style></head><body>",
        f"<h1>Run report <span class=muted>{e(str(run.path))}</span></h1>",
        "<table>"
        + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(run))
        + "</table>",
        "<h2>Top recommendations</h2>",
    ]
    recs = recommendations(run)
    parts.append(
        "<ol class=rec>" + "".join(f"<li>{e(r)}</li>" for r in recs) + "</ol>"
        if recs
        else "<p>Nothing to fix: no rule fired"
        + ("" if run.health else " (no health rules ran: use debug=health)")
        + ".</p>"
    )
    parts.append("<h2>Health rules</h2>")
    rows = _verdict_rows(run)
    if rows:
        parts.append(
            "<table><tr><th>rule</th><th>verdict</th><th>when</th><th>evidence</th>"
            "<th>what to do</th></tr>"
            + "".join(
                f"<tr class={r['status']}><td>{e(r['rule'])}</td><td>{e(r['verdict'])}</td>"
                f"<td>{e(r['when'])}</td><td>{e(r['evidence'])}</td><td>{e(r['hint'])}</td></tr>"
                for r in rows
            )
            + "</table>"
        )
    else:
        parts.append("<p class=muted>No health.json: run with `debug=health`.</p>")
    parts += ["<h2>Learning curves</h2>", img("learning_curves", "learning curves")]
    parts += ["<h2>Gradient norms per layer</h2>", img("grad_norms", "gradient norms")]
    parts += ["<h2>Where the time goes</h2>", img("time_split", "time split")]
    split = _split_rows(run)
    if split:
        parts.append(
            "<table><tr><th>phase</th><th>share of step</th><th>mean ms</th></tr>"
            + "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in split)
            + "</table>"
        )
    actions = (run.profile or {}).get("lightning_profiler")
    if actions:
        parts.append(
            "<h3>Lightning SimpleProfiler: top actions</h3><table><tr><th>action</th>"
            "<th>calls</th><th>total s</th></tr>"
            + "".join(
                f"<tr><td>{e(a['action'])}</td><td>{a['calls']}</td><td>{a['total_s']}</td></tr>"
                for a in actions
            )
            + "</table>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(run: Run, pics: dict[str, bytes], assets: str) -> str:
    lines = [f"# Run report: `{run.path}`", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _facts(run)]
    lines += ["", "## Top recommendations", ""]
    recs = recommendations(run)
    lines += [f"{i}. {r}" for i, r in enumerate(recs, 1)] or ["Nothing to fix: no rule fired."]
    lines += ["", "## Health rules", ""]
    rows = _verdict_rows(run)
    if rows:
        lines += [
            "| rule | verdict | when | evidence | what to do |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['rule']} | {r['verdict']} | {r['when']} | {r['evidence']} | {r['hint']} |"
            for r in rows
        ]
    else:
        lines.append("No health.json: run with `debug=health`.")
    for key, title in (
        ("learning_curves", "Learning curves"),
        ("grad_norms", "Gradient norms per layer"),
        ("time_split", "Where the time goes"),
    ):
        lines += ["", f"## {title}", ""]
        lines.append(f"![{title}]({assets}/{key}.png)" if key in pics else MISSING[key])
    split = _split_rows(run)
    if split:
        lines += ["", "| phase | share of step | mean ms |", "| --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in split]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, fmt: str = "html", out: str | Path | None = None) -> Path:
    """Write the run's report; returns its path (default: <run>/report.html or report.md)."""
    if fmt not in ("html", "md"):
        raise BincountError(f"unknown report format {fmt!r}: use html or md")
    run = load_run(path)
    pics = pictures(run)
    target = Path(out) if out else run.path / f"report.{fmt}"
    if fmt == "html":
        atomic_write_text(target, render_html(run, pics))
        return target
    assets = target.parent / f"{target.stem}_files"
    for key, png in pics.items():
        atomic_write_bytes(assets / f"{key}.png", png)
    atomic_write_text(target, render_markdown(run, pics, assets.name))
    return target
