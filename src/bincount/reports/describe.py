"""Describe a dataset folder: `bincount data describe FOLDER`.

Counts per class, image sizes, sample images per count, metadata facts (distinct products,
products per bin, weights and dimensions) and the split sizes the training would use; written
as PNGs, `report.md` (beside them), `report.html` (self-contained) and `summary.json`.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from bincount.data import layout, manifest
from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from bincount.reports import dataset_plots
from bincount.reports.document import Heading, Items, Picture, Table, Text, markdown, to_html

# Units in the metadata: weights in pounds, dimensions in inches.
_WEIGHT_UNITS = {"pounds": 1.0, "pound": 1.0, "lb": 1.0, "lbs": 1.0, "kilograms": 2.20462}
_LENGTH_UNITS = {"IN": 1.0, "in": 1.0, "inches": 1.0, "CM": 1 / 2.54, "cm": 1 / 2.54}


@dataclass
class Image_:
    id: str
    count: int | None = None
    width: int = 0
    height: int = 0
    kilobytes: float = 0.0
    products: dict[str, dict] = field(default_factory=dict)
    problem: str | None = None


def _measure(value: dict | None, units: dict[str, float]) -> float | None:
    if not isinstance(value, dict) or value.get("unit") not in units:
        return None
    try:
        return float(value["value"]) * units[value["unit"]]
    except (TypeError, ValueError, KeyError):
        return None


def inspect(folder: Path, image_id: str) -> Image_:
    """One image and its metadata: count, size, products; or why it cannot be used."""
    item = Image_(image_id)
    meta_path = layout.metadata_path(folder, image_id)
    try:
        data = meta_path.read_bytes()
        item.count = manifest.parse_count(data, meta_path)
        products = json.loads(data).get("BIN_FCSKU_DATA") or {}
        item.products = {k: v for k, v in products.items() if isinstance(v, dict)}
        path = layout.image_path(folder, image_id)
        raw = path.read_bytes()
        manifest.verify_jpeg(raw)
        with Image.open(path) as im:
            item.width, item.height = im.size
        item.kilobytes = len(raw) / 1024
    except FileNotFoundError as e:
        item.problem = f"{Path(e.filename).relative_to(folder)} missing"
    except BincountError as e:
        item.problem = str(e).replace(f"{folder}/", "")
    return item


def _spread(values: list[float], unit: str = "", digits: int = 1) -> str:
    if not values:
        return "n/a"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{lo:.{digits}f} / {mid:.{digits}f} / {hi:.{digits}f}{unit}"


def metadata_facts(images: list[Image_]) -> list[list[str]]:
    """Rows (fact, value) about the products in the bins."""
    products: dict[str, dict] = {}
    for im in images:
        products.update(im.products)
    per_bin = [len(im.products) for im in images]
    matches = sum(
        sum(int(p.get("quantity") or 0) for p in im.products.values()) == im.count for im in images
    )
    weights = [w for p in products.values() if (w := _measure(p.get("weight"), _WEIGHT_UNITS))]
    bin_weights = []
    for im in images:
        parts = [
            (_measure(p.get("weight"), _WEIGHT_UNITS), int(p.get("quantity") or 0))
            for p in im.products.values()
        ]
        if parts and all(w is not None for w, _ in parts):
            bin_weights.append(sum(w * q for w, q in parts))
    dims = {
        d: [x for p in products.values() if (x := _measure(p.get(d), _LENGTH_UNITS))]
        for d in ("length", "width", "height")
    }
    stubs = sum(not im.products for im in images)
    no_weight = sum(_measure(p.get("weight"), _WEIGHT_UNITS) is None for p in products.values())
    no_dims = sum(_measure(p.get("length"), _LENGTH_UNITS) is None for p in products.values())
    return [
        ["distinct products (ASINs)", f"{len(products):,}"],
        ["distinct products per bin (min / median / max)", _spread(per_bin, digits=0)],
        [
            "bins whose product quantities add up to EXPECTED_QUANTITY",
            f"{matches:,} of {len(images):,}",
        ],
        ["product weight, lb (min / median / max)", _spread(weights, digits=2)],
        ["weight of a bin's contents, lb (min / median / max)", _spread(bin_weights, digits=2)],
        *[[f"product {d}, in (min / median / max)", _spread(v)] for d, v in dims.items()],
        ["products without a weight / without dimensions", f"{no_weight} / {no_dims}"],
        [
            "bins whose metadata lists no products (stubs: no order lines, no product targets)",
            f"{stubs:,} of {len(images):,}",
        ],
    ]


def _manifest_rows(usable, counts, fractions, seed, manifest_csv) -> tuple[str, list]:
    if manifest_csv:
        return f"from the manifest {manifest_csv}", manifest.read(Path(manifest_csv))
    labelled = {i: c for i, c in usable.items() if c in counts}
    if not labelled:
        return f"no usable image has a count in {counts}", []
    how = (
        f"as training makes it: counts {counts}, split {list(fractions)}, seed {seed} "
        "(the data.* defaults)"
    )
    return how, manifest.stratified_split(labelled, fractions, seed)


def split_table(rows: list[manifest.Row]) -> list[list]:
    """[header, split x count rows..., all]: photos per split and count."""
    table = Counter((r.split, r.count) for r in rows)
    shown = sorted({r.count for r in rows})
    out = []
    for split in manifest.SPLITS:
        out.append([split, *[table[split, c] for c in shown], sum(table[split, c] for c in shown)])
    out.append(["all", *[sum(table[s, c] for s in manifest.SPLITS) for c in shown], len(rows)])
    return [["split", *[f"count {c}" for c in shown], "images"], *out]


def source_table(rows: list[manifest.Row]) -> list[list]:
    """[header, one row per source...]: photos per count and per split of each source of a
    manifest of several sources (`data=all`); [] for a manifest of one source."""
    by_source = sorted({r.source for r in rows}, key=lambda s: (Path(s).name, s))
    if len(by_source) < 2:
        return []
    shown = sorted({r.count for r in rows})
    counts = Counter((r.source, r.count) for r in rows)
    splits = Counter((r.source, r.split) for r in rows)
    out = [["source", *[f"count {c}" for c in shown], *manifest.SPLITS, "images"]]
    for src in by_source:
        out.append(
            [
                Path(src).name or src,
                *[counts[src, c] for c in shown],
                *[splits[src, s] for s in manifest.SPLITS],
                sum(counts[src, c] for c in shown),
            ]
        )
    return out


def fetch_history(folder: Path) -> list:
    """A section on how the folder was fetched, if `bincount data fetch` made it."""
    try:
        report = json.loads((folder / "fetch-report.json").read_text())
    except (OSError, ValueError):
        return []
    rows = [
        ["source", report.get("source", "?")],
        ["ids looked at", report.get("considered", 0)],
        ["images complete", len(report.get("complete", {}))],
        ["keys missing at the source", len(report.get("missing", []))],
        ["files broken at the source (not kept)", len(report.get("invalid", []))],
        ["files that failed after retries", len(report.get("failed", []))],
    ]
    if report.get("counts"):
        rows.append(["counts asked for", report["counts"]])
    return [Heading("How it was fetched"), Table(["", ""], rows)]


def default_out(folder: Path) -> Path:
    return Path("outputs") / "describe" / folder.resolve().name


def describe(
    folder: Path,
    out: Path | None = None,
    file_list: Path | None = None,
    manifest_csv: Path | None = None,
    counts: list[int] = (1, 2, 3, 4, 5),
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 42,
    samples: int = 6,
    workers: int = 4,
) -> Path:
    """Write the report of `folder` into `out`; returns the path of report.md."""
    folder = layout.check_folder(Path(folder))
    out = Path(out) if out else default_out(folder)
    if out.resolve() == folder or folder in out.resolve().parents:
        raise BincountError(f"--out {out} is inside the data folder: write the report elsewhere")
    if file_list and not Path(file_list).exists() and (folder / file_list).exists():
        file_list = folder / file_list
    ids = layout.file_list_ids(Path(file_list)) if file_list else layout.list_ids(folder)
    ids = list(dict.fromkeys(ids))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(lambda i: inspect(folder, i), ids))
    good = [im for im in images if im.problem is None]
    bad = [im for im in images if im.problem is not None]
    if not good:
        raise BincountError(
            f"none of the {len(ids)} images of {folder} can be used (e.g. {bad[0].problem}): "
            "check the folder (bincount data fetch writes one)"
        )
    per_count = Counter(im.count for im in good)
    rng = random.Random(seed)
    picks = {
        c: sorted(rng.sample([im.id for im in good if im.count == c], min(samples, per_count[c])))
        for c in sorted(per_count)
    }
    pictures = {
        "counts.png": dataset_plots.counts_bar(dict(per_count)),
        "sizes.png": dataset_plots.sizes(
            [im.width for im in good], [im.height for im in good], [im.kilobytes for im in good]
        ),
        "samples.png": dataset_plots.samples(
            {c: [layout.image_path(folder, i) for i in chosen] for c, chosen in picks.items()}
        ),
    }
    how, rows = _manifest_rows(
        {im.id: im.count for im in good}, sorted(counts), tuple(split), seed, manifest_csv
    )
    splits = split_table(rows) if rows else []
    per_source = source_table(rows)
    stubs = sum(not im.products for im in good)
    sizes = Counter((im.width, im.height) for im in good)
    blocks = [
        Heading(f"Dataset: {folder.name}", 1),
        Text(
            f"{folder}: {len(ids):,} images listed"
            + (f" in {file_list}" if file_list else "")
            + f", {len(good):,} usable, {len(bad):,} not"
            + (
                f"; {stubs:,} of the usable have stub metadata without products (they train, "
                "but carry no order lines and no product-derived targets)."
                if stubs
                else "."
            )
        ),
        Heading("Images per count"),
        Table(
            ["count", "images", "share"],
            [[c, per_count[c], f"{per_count[c] / len(good):.1%}"] for c in sorted(per_count)]
            + [["all", len(good), "100%"]],
        ),
        Picture("counts.png", "images per count"),
        Heading("Image sizes"),
        Table(
            ["", "min / median / max"],
            [
                ["width (px)", _spread([im.width for im in good], digits=0)],
                ["height (px)", _spread([im.height for im in good], digits=0)],
                ["file size (KB)", _spread([im.kilobytes for im in good])],
                ["total (MB)", f"{sum(im.kilobytes for im in good) / 1024:.1f}"],
            ],
        ),
        Text(
            "Most common sizes: "
            + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))
            + "."
        ),
        Picture("sizes.png", "image and file sizes"),
        Heading("Sample images per count"),
        Text(f"{samples} random images of each count (seed {seed}), as thumbnails."),
        Picture("samples.png", "sample images per count"),
        Heading("Metadata facts"),
        Table(["fact", "value"], metadata_facts(good)),
        Heading("Splits"),
        Text(f"Split {how}."),
        Table(splits[0], splits[1:]) if splits else Text("(no split)"),
    ]
    if per_source:
        blocks += [
            Heading("Sources"),
            Text("Photos per source of the manifest (copies are training photos only)."),
            Table(per_source[0], per_source[1:]),
        ]
    blocks += fetch_history(folder)
    if bad:
        blocks += [
            Heading("Images that cannot be used"),
            Items([f"{im.id}: {im.problem}" for im in bad[:50]]),
        ]
        if len(bad) > 50:
            blocks.append(Text(f"... and {len(bad) - 50} more (all in summary.json)."))
    for name, png in pictures.items():
        atomic_write_bytes(out / name, png)
    atomic_write_text(out / "report.md", markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, f"dataset {folder.name}", pictures))
    atomic_write_json(
        out / "summary.json",
        {
            "folder": str(folder),
            "listed": len(ids),
            "usable": len(good),
            "per_count": {str(c): per_count[c] for c in sorted(per_count)},
            "splits": splits,
            "sources": per_source,
            "without_products": stubs,
            "unusable": {im.id: im.problem for im in bad},
        },
    )
    return out / "report.md"
