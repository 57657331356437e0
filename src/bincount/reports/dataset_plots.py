"""The dataset report's pictures, as PNG bytes: images per count, image sizes, samples per count.

matplotlib's object API (Figure + Agg backend), no pyplot: no global state, no display.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

BAR = "#4c72b0"


def _new(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def counts_bar(per_count: dict[int, int]) -> bytes:
    """Bar chart: images per count (EXPECTED_QUANTITY)."""
    fig, axes = _new(6, 3.2)
    ax = axes[0][0]
    counts = sorted(per_count)
    bars = ax.bar(range(len(counts)), [per_count[c] for c in counts], color=BAR)
    ax.set_xticks(range(len(counts)), [str(c) for c in counts])
    ax.bar_label(bars, fontsize=8)
    ax.set_xlabel("objects in the bin (EXPECTED_QUANTITY)")
    ax.set_ylabel("images")
    ax.set_title("Images per count")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig)


def sizes(widths: list[int], heights: list[int], kilobytes: list[float]) -> bytes:
    """Width against height of every image, and the file sizes."""
    fig, axes = _new(8, 3.2, cols=2)
    left, right = axes[0]
    left.scatter(widths, heights, s=6, alpha=0.35, color=BAR, linewidths=0)
    left.set_xlabel("width (px)")
    left.set_ylabel("height (px)")
    left.set_title("Image sizes")
    right.hist(kilobytes, bins=40, color=BAR)
    right.set_xlabel("file size (KB)")
    right.set_ylabel("images")
    right.set_title("File sizes")
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig)


def samples(by_count: dict[int, list[Path]], thumb: int = 112) -> bytes:
    """A grid: one row per count, a few of its images (letterboxed thumbnails)."""
    counts = sorted(c for c in by_count if by_count[c])
    cols = max(len(by_count[c]) for c in counts)
    fig, axes = _new(1.3 * cols + 0.4, 1.3 * len(counts), rows=len(counts), cols=cols)
    for r, count in enumerate(counts):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if c < len(by_count[count]):
                with Image.open(by_count[count][c]) as im:
                    im.draft("RGB", (thumb, thumb))
                    im = im.convert("RGB")
                    im.thumbnail((thumb, thumb))
                    ax.imshow(im)
            if c == 0:
                ax.set_ylabel(f"count {count}", fontsize=9)
    return _save(fig, dpi=80)
