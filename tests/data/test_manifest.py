"""The manifest: real images, deterministic stratified split, corrupt inputs skipped."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from bincount.data import layout, manifest, sources
from bincount.errors import BincountError

FRACTIONS = (0.6, 0.2, 0.2)


def test_split_is_deterministic_and_roughly_stratified(abid, tmp_path):
    _, rows = manifest.load_or_build(abid, tmp_path, [1, 2, 3, 4, 5], FRACTIONS, seed=42)
    again, _ = manifest.build(abid, [1, 2, 3, 4, 5], FRACTIONS, seed=42)
    assert rows == again
    other, _ = manifest.build(abid, [1, 2, 3, 4, 5], FRACTIONS, seed=43)
    assert {r.id for r in rows if r.split == "test"} != {r.id for r in other if r.split == "test"}
    assert len(rows) == 201 + 620 + 786 + 646 + 416  # every count 1..5 image of the README
    per = Counter((r.count, r.split) for r in rows)
    for count in range(1, 6):  # a hash per photo: each count's split is binomial, not exact
        n = sum(per[count, s] for s in manifest.SPLITS)
        for split, frac in zip(manifest.SPLITS, FRACTIONS, strict=True):
            assert abs(per[count, split] - n * frac) <= 4 * (n * frac * (1 - frac)) ** 0.5
    assert all(r.source == str(abid) for r in rows)
    assert len({r.id for r in rows}) == len(rows)  # no id in two splits


def test_manifest_is_reused_and_ids_stay_strings(abid, tmp_path):
    path, rows = manifest.load_or_build(abid, tmp_path, [1, 2, 3, 4, 5], FRACTIONS, seed=42)
    stamp = path.stat().st_mtime_ns
    path2, rows2 = manifest.load_or_build(abid, tmp_path, [1, 2, 3, 4, 5], FRACTIONS, seed=42)
    assert path2 == path and path.stat().st_mtime_ns == stamp and rows2 == rows
    zero_padded = [r.id for r in rows2 if r.id.startswith("0")]
    assert zero_padded, "the shared data has zero-padded ids"
    for image_id in zero_padded[:20]:
        assert (abid / "bin-images" / f"{image_id}.jpg").exists()


def test_counts_filter(abid, tmp_path):
    _, rows = manifest.load_or_build(abid, tmp_path, [0, 5], FRACTIONS, seed=1)
    assert Counter(r.count for r in rows) == {0: 10, 5: 416}


def test_corrupt_inputs_are_reported_and_skipped(tiny_source, tmp_path, caplog):
    folder = tmp_path / "src"
    shutil.copytree(tiny_source, folder)
    ids = layout.list_ids(folder)
    truncated, not_jpeg, no_qty, bad_json, no_image = ids[:5]
    jpg = folder / "bin-images"
    data = (jpg / f"{truncated}.jpg").read_bytes()
    (jpg / f"{truncated}.jpg").write_bytes(data[: len(data) // 2])
    (jpg / f"{not_jpeg}.jpg").write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    meta = json.loads((folder / "metadata" / f"{no_qty}.json").read_text())
    del meta["EXPECTED_QUANTITY"]
    (folder / "metadata" / f"{no_qty}.json").write_text(json.dumps(meta))
    (folder / "metadata" / f"{bad_json}.json").write_text('{"EXPECTED_QUANTITY": 3,')
    (jpg / f"{no_image}.jpg").unlink()

    path, rows = manifest.load_or_build(folder, tmp_path / "cache", [1, 2, 3, 4, 5], FRACTIONS, 0)
    kept = {r.id for r in rows}
    assert kept == set(ids[5:])
    report = path.with_suffix(".skipped.tsv").read_text()
    for image_id, words in [
        (truncated, "does not decode"),
        (not_jpeg, "does not decode"),
        (no_qty, "no EXPECTED_QUANTITY"),
        (bad_json, "not valid JSON"),
        (no_image, "image missing"),
    ]:
        line = next(ln for ln in report.splitlines() if ln.startswith(image_id + "\t"))
        assert words in line
    assert "skipped 5" in caplog.text


def test_file_list_subset(tiny_source, tmp_path):
    ids = layout.list_ids(tiny_source)
    listing = {"1": [f"data/metadata/{i}.json" for i in ids[:12]] + ["data/metadata/nope.json"]}
    file_list = tmp_path / "file_list.json"
    file_list.write_text(json.dumps(listing))
    _, rows = manifest.load_or_build(
        tiny_source, tmp_path, [1, 2, 3, 4, 5], FRACTIONS, 0, file_list
    )
    assert {r.id for r in rows} == set(ids[:12])


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "has no bin-images or metadata/"),
        (lambda p: (p / "bin-images").mkdir() or (p / "metadata").mkdir() or p, "is empty"),
    ],
    ids=["missing", "not-bucket-layout", "empty"],
)
def test_bad_folders_say_what_to_do(tmp_path, make, words):
    with pytest.raises(BincountError, match=words) as e:
        sources.resolve_source(str(make(tmp_path)), tmp_path / "cache")
    assert "data.source=" in str(e.value)


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a b", "", "x.jpg", "..", "a/b"])
def test_ids_that_could_escape_are_refused(bad, tmp_path):
    with pytest.raises(BincountError, match="invalid image id"):
        layout.image_path(tmp_path, bad)


def test_no_usable_images(tiny_source, tmp_path):
    with pytest.raises(BincountError, match="no usable images"):
        manifest.load_or_build(tiny_source, tmp_path, [9], FRACTIONS, 0)
