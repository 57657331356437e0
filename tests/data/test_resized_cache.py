"""The resized-image cache: the same pixels as decoding, reused, rebuilt when it must be."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from bincount import cli
from bincount.data import resized, transforms
from bincount.data.datamodule import BinDataModule
from bincount.errors import BincountError

SIZE = 64
FILL = (128, 128, 128)


@pytest.fixture
def source(tiny_source, tmp_path):
    """A private copy of the tiny source (these tests touch files in it)."""
    return shutil.copytree(tiny_source, tmp_path / "abid")


def ids_of(folder):
    return sorted(p.stem for p in (folder / "bin-images").glob("*.jpg"))


def images(folder, ids):
    return [(i, folder / "bin-images" / f"{i}.jpg") for i in ids]


def test_cache_holds_the_letterboxed_pixels_and_is_reused(source, tmp_path):
    ids = ids_of(source)[:6]
    path = resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache")
    cache = resized.ResizedImages(path)
    assert len(cache) == 6 and cache.size == SIZE
    for image_id in ids:
        expected = transforms.Letterbox(SIZE, FILL)(
            transforms.open_rgb(source / "bin-images" / f"{image_id}.jpg", SIZE)
        )
        assert np.array_equal(np.asarray(cache.image(image_id)), np.asarray(expected))
    mtime = (path / resized.ARRAY).stat().st_mtime_ns
    assert resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache") == path
    assert (path / resized.ARRAY).stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_another_size_is_another_cache(source, tmp_path):
    ids = ids_of(source)[:3]
    a = resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache")
    b = resized.ensure(images(source, ids), 32, FILL, tmp_path / "cache")
    assert a != b and resized.ResizedImages(b).size == 32
    assert resized.ResizedImages(a).size == SIZE


def test_a_changed_source_image_rebuilds_the_cache(source, tmp_path):
    ids = ids_of(source)[:3]
    path = resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache")
    before = np.asarray(resized.ResizedImages(path).image(ids[0])).copy()
    # Replace the first image by the second one (a re-fetched file): same id, new pixels.
    first = source / "bin-images" / f"{ids[0]}.jpg"
    shutil.copy(source / "bin-images" / f"{ids[1]}.jpg", first)
    os.utime(first, ns=(1, 1))
    assert resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache") == path
    after = np.asarray(resized.ResizedImages(path).image(ids[0]))
    assert not np.array_equal(before, after)
    assert np.array_equal(after, np.asarray(resized.ResizedImages(path).image(ids[1])))


def test_squash_is_another_cache_with_the_squashed_pixels(source, tmp_path):
    ids = ids_of(source)[:3]
    boxed = resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache")
    path = resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache", resize="squash")
    assert path != boxed
    for image_id in ids:
        im = transforms.open_rgb(source / "bin-images" / f"{image_id}.jpg", SIZE)
        expected = np.asarray(transforms.Squash(SIZE)(im))
        got = np.asarray(resized.ResizedImages(path).image(image_id))
        assert np.array_equal(got, expected)
        assert not np.array_equal(got, np.asarray(resized.ResizedImages(boxed).image(image_id)))


def test_a_missing_image_is_a_clear_error(source, tmp_path):
    ids = ids_of(source)[:2]
    (source / "bin-images" / f"{ids[0]}.jpg").unlink()
    with pytest.raises(BincountError, match="is missing"):
        resized.ensure(images(source, ids), SIZE, FILL, tmp_path / "cache")


@pytest.mark.parametrize("resize", ["letterbox", "squash"])
def test_datamodule_gives_the_same_tensors_with_and_without_the_cache(source, tmp_path, resize):
    def batches(cached: bool):
        dm = BinDataModule(
            str(source),
            str(tmp_path / "data"),
            image_size=SIZE,
            batch_size=8,
            num_workers=0,
            network={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
            resized_cache=cached,
            resize=resize,
        )
        dm.prepare_data()
        dm.setup()
        assert (dm.cache is not None) == cached
        return [x for x, _ in dm.val_dataloader()]

    plain, cached = batches(False), batches(True)
    assert len(plain) == len(cached) > 0
    for a, b in zip(plain, cached, strict=True):
        assert torch.equal(a, b)


def test_cache_images_command_builds_what_training_reads(source, tmp_path, capsys):
    overrides = [f"data.source={source}", f"paths.data_dir={tmp_path / 'data'}"]
    overrides.append("data.image_size=48")
    assert cli.main(["cache", "images", *overrides]) == 0
    out = capsys.readouterr().out
    built = list((tmp_path / "data" / "resized").iterdir())
    assert len(built) == 1 and str(built[0]) in out and "48px" in built[0].name
    assert resized.ResizedImages(built[0]).size == 48
    assert cli.main(["cache", "images", "data.nope=1"]) == 2
