"""Several sources, one manifest; a manifest that follows its sources; splits that stay put."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bincount.data import manifest, sources
from bincount.data.datamodule import BinDataModule
from bincount.errors import BincountError

FRACTIONS = (0.6, 0.2, 0.2)
COUNTS = [1, 2, 3, 4, 5]


def all_ids(abid: Path) -> list[str]:
    return sorted(p.stem for p in (abid / "metadata").glob("*.json"))


def add_photos(abid: Path, dest: Path, ids: list[str]) -> Path:
    """Put these real photos of ../shared/abid into `dest` (hard links, else copies)."""
    for sub, suffix in (("bin-images", ".jpg"), ("metadata", ".json")):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for i in ids:
            src, dst = abid / sub / f"{i}{suffix}", dest / sub / f"{i}{suffix}"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return dest


def squashed_copy(abid: Path, dest: Path, ids: list[str], size: int = 48) -> Path:
    """A source of these photos squashed to size x size and re-encoded (like abid-224)."""
    for sub in ("bin-images", "metadata"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for i in ids:
        with Image.open(abid / "bin-images" / f"{i}.jpg") as im:
            buf = io.BytesIO()
            im.convert("RGB").resize((size, size)).save(buf, "JPEG", quality=80)
        (dest / "bin-images" / f"{i}.jpg").write_bytes(buf.getvalue())
        shutil.copy(abid / "metadata" / f"{i}.json", dest / "metadata")
    return dest


def splits(rows) -> dict[str, str]:
    return {r.id: r.split for r in rows}


def test_a_stale_manifest_is_rebuilt_and_says_why(abid, tmp_path, caplog):
    ids = all_ids(abid)[::40]  # ~67 real photos over all counts
    folder = add_photos(abid, tmp_path / "src", ids[:40])
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="bincount.data.manifest")
    path, before = manifest.load_or_build(folder, cache, COUNTS, FRACTIONS, seed=3)
    assert "not built yet" in caplog.text
    caplog.clear()
    again_path, again = manifest.load_or_build(folder, cache, COUNTS, FRACTIONS, seed=3)
    assert (again_path, again) == (path, before) and "building" not in caplog.text

    add_photos(abid, folder, ids[40:])  # more photos fetched into the same folder
    caplog.clear()
    path2, after = manifest.load_or_build(folder, cache, COUNTS, FRACTIONS, seed=3)
    assert path2 == path  # the same manifest, rebuilt in place
    assert f"source {folder} changed: 80 -> {2 * len(ids)} files" in caplog.text
    new = {r.id for r in after} - {r.id for r in before}
    assert new and new <= set(ids[40:]) and {r.id for r in before} <= {r.id for r in after}
    assert {i: splits(after)[i] for i in splits(before)} == splits(before)  # nothing moved

    # A photo replaced in place (same name, other bytes) also rebuilds it.
    first = folder / "bin-images" / f"{ids[0]}.jpg"
    first.unlink()
    shutil.copy(abid / "bin-images" / f"{ids[1]}.jpg", first)
    caplog.clear()
    manifest.load_or_build(folder, cache, COUNTS, FRACTIONS, seed=3)
    assert "files replaced or touched" in caplog.text


def test_adding_photos_never_moves_a_photo_between_splits(abid):
    ids = all_ids(abid)
    some, _ = manifest.build(abid, COUNTS, FRACTIONS, seed=7, ids=ids[::3])
    more, _ = manifest.build(abid, COUNTS, FRACTIONS, seed=7, ids=ids[::3] + ids[1::3])
    before, after = splits(some), splits(more)
    assert len(after) > len(before) > 500
    assert {i: after[i] for i in before} == before
    other, _ = manifest.build(abid, COUNTS, FRACTIONS, seed=8, ids=ids[::3])
    assert splits(other) != before  # the seed does move them


@pytest.mark.parametrize("flag", [{"original": False}, {"squashed": True}])
def test_several_sources_one_manifest_originals_win(abid, tmp_path, flag):
    ids = all_ids(abid)[::200]  # 14 photos
    original = add_photos(abid, tmp_path / "orig", ids[:8])
    # The source of copies has 4 of the same ids (other bytes) and 6 of its own.
    small = squashed_copy(abid, tmp_path / "small", ids[4:])
    listing = [manifest.Located(small, **flag), manifest.Located(original)]
    path, rows = manifest.load_or_build(listing, tmp_path / "cache", COUNTS, FRACTIONS, 5)
    # original: false and squashed: true are one setting: the same manifest (name and rows)
    assert (
        path.name
        == manifest.manifest_path(
            tmp_path,
            [manifest.Located(small, squashed=True), manifest.Located(original)],
            {"counts": COUNTS, "split": list(FRACTIONS), "seed": 5, "file_list": None},
        ).name
    )
    by_id = {r.id: r for r in rows}
    assert sorted(by_id) == sorted(ids) and len(rows) == len(ids)  # each id once
    for i in ids[:8]:  # the original bytes win, whichever source is listed first
        assert by_id[i].source == str(original)
    for i in ids[8:]:  # only in the squashed source: training photos
        assert by_id[i].source == str(small) and by_id[i].split == "train"

    dm = BinDataModule(
        source=[str(original), {"path": str(small), **flag}],
        cache_dir=str(tmp_path / "cache"),
        split=list(FRACTIONS),
        seed=5,
        image_size=32,
        num_workers=0,
    )
    dm.setup()
    read = {i: p for s in dm.datasets.values() for i, p in zip(s.ids, s.paths, strict=True)}
    assert read[ids[5]] == original / "bin-images" / f"{ids[5]}.jpg"
    assert read[ids[9]] == small / "bin-images" / f"{ids[9]}.jpg"
    held_out = dm.datasets["val"].paths + dm.datasets["test"].paths
    assert held_out and all(p.parent.parent == original for p in held_out)
    assert dm.datasets["train"][0][0].shape == (3, 32, 32)


@pytest.mark.parametrize(
    "setting,words",
    [
        ([], "empty list"),
        (["a", "a"], "lists a twice"),
        ([{"path": "a", "squashd": True}], "path \\(required\\), original and squashed only"),
        ([{"path": "a", "squashed": "yes"}], "original and squashed true or false"),
        ([{"path": "a", "original": "no"}], "original and squashed true or false"),
        ([{"path": "a", "original": True, "squashed": True}], "drop original: true"),
        ([3], "is not a path"),
    ],
)
def test_bad_source_lists_say_how_to_write_them(setting, words):
    with pytest.raises(BincountError, match=words):
        sources.parse_sources(setting)


def test_source_lists_parse(tmp_path):
    got = sources.parse_sources(
        ["a", {"path": "s3://b/p", "squashed": True}, {"path": "c", "original": False}]
    )
    assert got == [
        sources.Source("a"),
        sources.Source("s3://b/p", original=False, squashed=True),
        sources.Source("c", original=False),
    ]
    assert sources.Source("d", squashed=True).original is False  # squashed: copies
    assert sources.parse_sources("x") == [sources.Source("x")]


def test_a_local_folder_and_an_s3_source_make_one_dataset(
    abid, abid_bucket, abid_files, make_bucket, tmp_path
):
    _, s3_ids = abid_bucket
    files = abid_files(s3_ids)
    files["file_list.json"] = json.dumps([f"metadata/{i}.json" for i in s3_ids]).encode()
    bucket = make_bucket(files)
    local_ids = [i for i in all_ids(abid)[1::97] if i not in s3_ids][:12]
    folder = add_photos(abid, tmp_path / "local", local_ids)
    dm = BinDataModule(
        source=[str(folder), f"s3://{bucket}"],
        cache_dir=str(tmp_path / "data"),
        counts=[0, 1, 2, 3, 4, 5],
        image_size=32,
        num_workers=0,
    )
    dm.prepare_data()
    dm.setup()
    assert dm.folders == [folder.resolve(), tmp_path / "data" / "s3" / bucket]
    by_source = {}
    for r in dm.rows:
        by_source.setdefault(r.source, set()).add(r.id)
    assert by_source == {str(folder.resolve()): set(local_ids), str(dm.folders[1]): set(s3_ids)}


def test_split_channels_of_several_sources_read_each_photo_from_its_source(abid, tmp_path):
    from bincount.data import upload

    ids = all_ids(abid)[5::150]
    first = add_photos(abid, tmp_path / "a", ids[:6])
    second = add_photos(abid, tmp_path / "b", ids[6:])
    path, rows = manifest.load_or_build([first, second], tmp_path / "cache", COUNTS, FRACTIONS, 1)
    images = {
        item.key.rsplit("/", 1)[-1]: item.path
        for item in upload.split_items(first, path)
        if "/bin-images/" in item.key
    }
    assert len(images) == len(rows) == len(ids)
    assert {images[f"{i}.jpg"].parent.parent for i in ids[6:]} == {second.resolve()}


def stub_source(abid: Path, dest: Path, per_count: int = 3) -> Path:
    """Real photos of ../shared/abid-256 (counts 1, 2, 4, 5) with their stub metadata
    (EXPECTED_QUANTITY and label_source only: no products), hard-linked into `dest`."""
    shared = abid.parent / "abid-256"
    if not (shared / "sources.csv").is_file():
        pytest.fail(f"{shared} is missing: this test needs ../shared/abid-256 beside the checkout")
    by_count: dict[str, list[str]] = {}
    for line in (shared / "sources.csv").read_text().splitlines()[1:]:
        image_id, label = line.split(",")[:2]
        by_count.setdefault(label, []).append(image_id)
    ids = [i for label in sorted(by_count) for i in sorted(by_count[label])[:per_count]]
    return add_photos(shared, dest, ids)


@pytest.mark.long
def test_a_source_with_stub_metadata_trains_describes_and_is_left_out_of_orders(
    abid, tiny_source, tmp_path, caplog, capsys
):
    from runner import run_tiny

    from bincount.verify import orders
    from bincount.cli import main

    stub = stub_source(abid, tmp_path / "abid-256")
    stubs = {p.stem for p in (stub / "metadata").glob("*.json")}
    assert len(stubs) == 12
    assert not any(
        manifest.has_products((stub / "metadata" / f"{i}.json").read_bytes()) for i in stubs
    )
    (stub / "bin-images" / "no_meta.jpg").write_bytes(
        (stub / "bin-images" / f"{min(stubs)}.jpg").read_bytes()
    )

    # Trains (with a product-derived target, the auxiliary head, on): each stub once, in train.
    run, proc = run_tiny(
        f"[{tiny_source},{{path:{stub},original:false}}]",
        tmp_path,
        "data.image_size=64",
        "trainer.max_epochs=1",
        "model.net.aux=true",
        "model.aux_weight=0.5",
    )
    log_text = (run / "train.log").read_text() if (run / "train.log").exists() else ""
    said = proc.stdout + proc.stderr + log_text
    rows = manifest.read(next((tmp_path / "data" / "manifests").glob("abid+1-*.csv")))
    by_id = {r.id: r for r in rows}
    assert all(by_id[i].split == "train" and by_id[i].source == str(stub) for i in stubs)
    train = [r for r in rows if r.split == "train"]
    assert "stub metadata, without products (no BIN_FCSKU_DATA, e.g. 1" in said, said[-3000:]
    assert "without products (no BIN_FCSKU_DATA, e.g. " + min(stubs) + "): 12," in said
    assert "photos without a metadata file (no count): 1, not used (e.g. no_meta" in said
    assert f"auxiliary targets: 12 of {len(train)} train photos have no products" in said

    # Describes: the stub folder alone, and the run's manifest by source.
    out = tmp_path / "describe"
    assert main(["data", "describe", str(stub), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usable"] == 12 and summary["without_products"] == 12
    assert summary["per_count"] == {"1": 3, "2": 3, "4": 3, "5": 3}
    assert "12 of the usable have stub metadata" in (out / "report.md").read_text()
    csv_path = next((tmp_path / "data" / "manifests").glob("abid+1-*.csv"))
    assert (
        main(["data", "describe", str(stub), "-o", str(out / "m"), "--manifest", str(csv_path)])
        == 0
    )
    per_source = json.loads((out / "m" / "summary.json").read_text())["sources"]
    assert per_source[0] == [
        "source",
        *[f"count {c}" for c in COUNTS],
        "train",
        "val",
        "test",
        "images",
    ]
    assert per_source[1:] == [
        ["abid", 8, 8, 8, 8, 8, 20, 10, 10, 40],
        ["abid-256", 3, 3, 0, 3, 3, 12, 0, 0, 12],
    ]

    # Left out of the train split's order stream, with a count of what was left out.
    caplog.set_level(logging.INFO, logger="bincount.verify.check")
    capsys.readouterr()
    output = tmp_path / "orders.jsonl"
    assert main(["orders", str(run), "--split", "train", "-o", str(output)]) == 0
    written = orders.read(output)
    in_stream = {Path(o.image).stem for o in written}
    assert in_stream and not in_stream & stubs
    no_lines = [
        r.id
        for r in train
        if orders.read_bin(Path(r.source) / "bin-images" / f"{r.id}.jpg") is None
    ]
    assert stubs <= set(no_lines) and len(written) == len(train) - len(no_lines)
    assert (
        f"{len(no_lines)} of {len(train)} train photos have no line items: left out" in caplog.text
    )
    assert f"{len(written)} train orders" in capsys.readouterr().out
