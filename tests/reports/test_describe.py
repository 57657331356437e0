"""describe on the real images of ../shared/abid."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
from PIL import Image

from bincount.cli import main
from bincount.data import manifest
from bincount.errors import BincountError
from bincount.reports import describe


def true_counts(folder) -> Counter:
    return Counter(
        json.loads(p.read_text())["EXPECTED_QUANTITY"] for p in (folder / "metadata").glob("*.json")
    )


def test_describe_the_shared_mirror(abid, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["data", "describe", str(abid), "--out", str(out)]) == 0
    assert "report written" in capsys.readouterr().out
    counts = true_counts(abid)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_count"] == {str(c): n for c, n in sorted(counts.items())}
    assert summary["usable"] == sum(counts.values()) and summary["unusable"] == {}
    # Splits as training makes them (counts 1..5): every such image in exactly one split.
    splits = {row[0]: row[-1] for row in summary["splits"][1:]}
    assert splits["all"] == sum(n for c, n in counts.items() if 1 <= c <= 5)
    assert splits["train"] + splits["val"] + splits["test"] == splits["all"]
    for name in ("counts.png", "sizes.png", "samples.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
    md = (out / "report.md").read_text()
    for section in ("Images per count", "Image sizes", "Sample images per count", "Metadata facts"):
        assert f"## {section}" in md
    assert f"| 3 | {counts[3]} |" in md and "![images per count](counts.png)" in md
    assert "distinct products (ASINs)" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html


def test_unusable_files_are_listed_and_splits_can_come_from_a_manifest(tiny_source, tmp_path):
    folder = shutil.copytree(tiny_source, tmp_path / "abid")
    images = sorted((folder / "bin-images").iterdir())
    data = images[0].read_bytes()
    images[0].write_bytes(data[: len(data) // 3])  # truncated JPEG
    metas = sorted((folder / "metadata").iterdir())
    metas[1].write_text("{not json")
    images[2].unlink()
    path, rows = manifest.load_or_build(folder, tmp_path / "cache", [1, 2, 3], (0.5, 0.25, 0.25), 7)
    report = describe.describe(folder, tmp_path / "out", manifest_csv=path, samples=2)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["unusable"]) == sorted([images[0].stem, metas[1].stem, images[2].stem])
    assert "does not decode" in summary["unusable"][images[0].stem]
    assert "not valid JSON" in summary["unusable"][metas[1].stem]
    assert "missing" in summary["unusable"][images[2].stem]
    assert summary["usable"] == 37
    split_sizes = {row[0]: row[-1] for row in summary["splits"][1:]}
    assert split_sizes == {
        **{s: sum(r.split == s for r in rows) for s in manifest.SPLITS},
        "all": len(rows),
    }
    assert "## Images that cannot be used" in report.read_text()


def test_describe_a_file_list_with_the_default_output_folder(tiny_source, tmp_path, monkeypatch):
    ids = sorted(p.stem for p in (tiny_source / "metadata").iterdir())[:10]
    (tmp_path / "ids.json").write_text(json.dumps({"any": [f"metadata/{i}.json" for i in ids]}))
    monkeypatch.chdir(tmp_path)
    report = describe.describe(tiny_source, file_list=tmp_path / "ids.json", samples=1)
    assert report == describe.default_out(tiny_source) / "report.md"
    assert json.loads((report.parent / "summary.json").read_text())["listed"] == 10


def test_describe_errors(tiny_source, tmp_path, capsys):
    assert main(["data", "describe", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(BincountError, match="inside the data folder"):
        describe.describe(tiny_source, tiny_source / "report")
    assert not (tiny_source / "report").exists()


def test_a_fetched_folder_says_how_it_was_fetched(abid, tmp_path):
    from bincount.data import fetch, sources

    fetch.fetch(sources.open_store(str(abid)), tmp_path / "abid", ids=["00037", "00038", "nope1"])
    report = describe.describe(tmp_path / "abid", tmp_path / "out", samples=1)
    md = report.read_text()
    assert "## How it was fetched" in md
    assert "| keys missing at the source | 1 |" in md and "| images complete | 2 |" in md
