"""The run report's pictures, as PNG bytes: learning curves, gradient norms, the time split.

matplotlib's object API (Figure + Agg), no pyplot: no global state, no display needed.
"""

from __future__ import annotations

import io
import math

PHASE_COLOURS = {
    "data": "#e4572e",
    "forward": "#4c72b0",
    "backward": "#55a868",
    "optimizer": "#8172b2",
}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def learning_curves(series: dict[str, list[tuple[int, float]]]) -> bytes | None:
    """series: metric -> [(step, value)]. Loss panel and a validation-metrics panel."""
    losses = [k for k in ("train/loss_step", "train/loss_epoch", "val/loss") if series.get(k)]
    scores = [k for k in ("train/acc", "val/acc", "val/off_by_one") if series.get(k)]
    if not losses and not scores:
        return None
    fig = _figure(10, 3.6)
    axes = fig.subplots(1, 2)
    styles = {"train/loss_step": dict(alpha=0.35, lw=1), "train/loss_epoch": dict(marker="o")}
    for key in losses:
        xs, ys = zip(*series[key], strict=True)
        axes[0].plot(xs, ys, label=key, **styles.get(key, dict(marker="o")))
    axes[0].set(title="loss", xlabel="step")
    values = [v for k in losses for _, v in series[k] if v > 0]
    if values and max(values) > 100 * min(values):  # a loss that blew up: a log scale
        axes[0].set_yscale("log")
    for key in scores:
        xs, ys = zip(*series[key], strict=True)
        axes[1].plot(xs, ys, marker="o", label=key)
    axes[1].set(title="accuracy", xlabel="step", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _png(fig)


def grad_norms(steps: list[int], layers: list[str], norms: list[list[float]]) -> bytes | None:
    """A heatmap of log10 gradient norm (layers top = input side, steps left to right), and
    the total, first and last layers' norms over the steps."""
    if not steps or not layers:
        return None
    import numpy as np
    from matplotlib.colors import Normalize

    grid = np.array(norms, dtype=float).T  # layers x steps
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.where(grid > 0, grid, np.nan))
    finite = logs[np.isfinite(logs)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (-1.0, 1.0)
    fig = _figure(10, 4.6)
    heat, lines = fig.subplots(1, 2, width_ratios=[3, 2])
    im = heat.imshow(
        logs,
        aspect="auto",
        cmap="magma",
        norm=Normalize(lo, hi),
        interpolation="nearest",
        extent=(steps[0] - 0.5, steps[-1] + 0.5, len(layers) - 0.5, -0.5),
    )
    fig.colorbar(im, ax=heat, label="log10 gradient L2 norm")
    ticks = sorted({0, len(layers) // 2, len(layers) - 1})
    heat.set_yticks(ticks, [_short(layers[i]) for i in ticks], fontsize=7)
    heat.set(title=f"gradient norm per layer ({len(layers)} layers)", xlabel="step")
    total = [math.sqrt(sum(v * v for v in row if math.isfinite(v))) for row in norms]
    lines.plot(steps, total, label="total", color="black")
    for i, colour in ((0, "#e4572e"), (len(layers) - 1, "#4c72b0")):
        lines.plot(steps, [row[i] for row in norms], label=_short(layers[i]), color=colour)
    lines.set(yscale="log", title="gradient norm", xlabel="step")
    lines.grid(alpha=0.3)
    lines.legend(fontsize=8)
    return _png(fig)


def time_split(profile: dict) -> bytes | None:
    """The step's time split (one stacked bar) and the per-step times over the run."""
    split = profile.get("split")
    if not split:
        return None
    fig = _figure(10, 3.2)
    bar, over = fig.subplots(1, 2, width_ratios=[2, 3])
    left = 0.0
    for phase, colour in PHASE_COLOURS.items():
        frac = split.get(phase, {}).get("fraction", 0.0)
        bar.barh([0], [frac], left=left, color=colour, label=phase)
        if frac >= 0.06:
            bar.text(left + frac / 2, 0, f"{frac:.0%}", ha="center", va="center", color="white")
        left += frac
    mean = profile.get("step_seconds", {}).get("mean") or 0
    bar.set(xlim=(0, 1), yticks=[], title=f"share of a training step ({mean * 1000:.0f} ms)")
    bar.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    timeline = profile.get("timeline") or []
    if timeline:
        xs = list(range(1, len(timeline) + 1))
        stacks = [[row[2 + i] for row in timeline] for i in range(len(PHASE_COLOURS))]
        over.stackplot(xs, stacks, colors=list(PHASE_COLOURS.values()), alpha=0.85)
        over.set(title="time per training step", xlabel="step", ylabel="ms")
        over.grid(alpha=0.3)
    return _png(fig)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]
