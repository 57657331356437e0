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


def test_several_sources_one_manifest_originals_win(abid, tmp_path):
    ids = all_ids(abid)[::200]  # 14 photos
    original = add_photos(abid, tmp_path / "orig", ids[:8])
    # The squashed source has 4 of the same ids (other bytes) and 6 of its own.
    small = squashed_copy(abid, tmp_path / "small", ids[4:])
    listing = [manifest.Located(small, squashed=True), manifest.Located(original)]
    _, rows = manifest.load_or_build(listing, tmp_path / "cache", COUNTS, FRACTIONS, 5)
    by_id = {r.id: r for r in rows}
    assert sorted(by_id) == sorted(ids) and len(rows) == len(ids)  # each id once
    for i in ids[:8]:  # the original bytes win, whichever source is listed first
        assert by_id[i].source == str(original)
    for i in ids[8:]:  # only in the squashed source: training photos
        assert by_id[i].source == str(small) and by_id[i].split == "train"

    dm = BinDataModule(
        source=[str(original), {"path": str(small), "squashed": True}],
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
        ([{"path": "a", "squashd": True}], "path \\(required\\) and squashed only"),
        ([{"path": "a", "squashed": "yes"}], "squashed true or false"),
        ([3], "is not a path"),
    ],
)
def test_bad_source_lists_say_how_to_write_them(setting, words):
    with pytest.raises(BincountError, match=words):
        sources.parse_sources(setting)


def test_source_lists_parse(tmp_path):
    got = sources.parse_sources(["a", {"path": "s3://b/p", "squashed": True}])
    assert got == [sources.Source("a"), sources.Source("s3://b/p", True)]
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
