"""Training decodes photos that may have changed since the manifest was built: a damaged one is
skipped, logged, counted and listed (bad_images.json), up to data.max_bad_images; and every
photo is seen upright (its EXIF orientation applied) in training as in inference."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
import torch
from PIL import Image
from runner import run_train

from bincount.data import transforms
from bincount.data.datamodule import BAD_IMAGES, BinDataModule
from bincount.errors import BincountError


@pytest.fixture
def source(tiny_source, tmp_path):
    """A fresh copy of the 40 real photos of `tiny_source`: these tests damage it."""
    return shutil.copytree(tiny_source, tmp_path / "abid")


def _datamodule(source, tmp_path, workers=0, **kw):
    dm = BinDataModule(
        source,
        str(tmp_path / "cache"),
        image_size=64,
        batch_size=4,
        num_workers=workers,
        jitter=0.0,
        **kw,
    )
    dm.prepare_data()  # the manifest, built from the photos as they are now
    dm.setup()
    return dm


def _truncate(dm, n: int) -> list[str]:
    ds = dm.datasets["train"]
    for path in ds.paths[:n]:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])  # what a half-finished copy leaves
    return ds.ids[:n]


def _rot(dm, n: int) -> list[str]:
    """Damage n training photos without changing their size or time (bit rot; a copy
    tool that keeps both): the manifest's fingerprint still matches, so a new run reuses it
    and meets the damage only when it decodes them."""
    ds = dm.datasets["train"]
    for path in ds.paths[:n]:
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[:64] = bytes(64)  # no JPEG marker left: not an image any more
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return ds.ids[:n]


def _epoch(dm) -> int:
    seen = 0
    for batch in dm.train_dataloader():
        dm.on_before_batch_transfer(batch, 0)
        assert torch.isfinite(batch[0]).all()
        seen += len(batch[1])
    return seen


@pytest.mark.parametrize("workers", [0, 2])
def test_a_photo_damaged_after_the_manifest_is_skipped_and_listed(source, tmp_path, workers):
    dm = _datamodule(source, tmp_path, workers)
    broken = _truncate(dm, 1)
    dm.train_dataloader()  # the loader drops its last partial batch: count from the dataset
    n = len(dm.datasets["train"])
    seen = _epoch(dm)
    assert seen == n - n % 4 if n > 4 else seen == n  # every sample came back (a stand-in)
    bad = dm.check_bad_images(stop=False) or dm.bad.read()
    assert [b["id"] for b in bad] == broken
    assert "truncated" in bad[0]["error"] or "OSError" in bad[0]["error"]


def test_more_bad_photos_than_allowed_stop_the_run(source, tmp_path):
    dm = _datamodule(source, tmp_path, max_bad_images=1)
    _truncate(dm, 3)
    with pytest.raises(BincountError, match=r"cannot be decoded \(more than data.max_bad_images=1"):
        _epoch(dm)


def test_without_a_report_a_bad_photo_is_one_line(source, tmp_path):
    dm = _datamodule(source, tmp_path)
    _truncate(dm, 1)
    ds = dm.datasets["train"]
    ds.bad = None
    with pytest.raises(BincountError, match="cannot be decoded"):
        ds[0]


@pytest.mark.long
def test_a_training_lists_the_photos_it_skipped(source, tmp_path):
    data_dir = tmp_path / "data"
    common = [
        "experiment=smoke",
        f"data.source={source}",
        f"paths.data_dir={data_dir}",
        "data.num_workers=0",
        "data.image_size=64",
        "batch_size=4",
        "test=false",
    ]
    # the manifest first, as a previous run would have left it
    dm = BinDataModule(source, str(data_dir), image_size=64, batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup()
    train_ids = dm.datasets["train"].ids
    broken = _rot(dm, 1)

    run = tmp_path / "run"
    proc = run_train(*common, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / BAD_IMAGES).read_text())
    assert report["count"] == 1 and [b["id"] for b in report["images"]] == broken
    assert f"1 photos could not be decoded and were skipped (listed in {run / BAD_IMAGES})" in (
        (run / "train.log").read_text()
    )

    log = (run / "train.log").read_text()
    assert "manifest" in log and "building it" not in log  # the manifest was reused
    # two more, with at most one allowed: the run stops with one line
    _rot(dm, 3)
    assert len(train_ids) > 3
    proc = run_train(*common, "data.max_bad_images=1", f"hydra.run.dir={tmp_path / 'run2'}")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and "more than data.max_bad_images=1" in lines[0]
    assert "Traceback" not in proc.stderr


# --- EXIF orientation ----------------------------------------------------------------------


def _tagged(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[transforms.ORIENTATION] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_a_photo_rotated_by_its_tag_decodes_as_the_same_photo_turned(abid, orientation, turn):
    with Image.open(next(iter(sorted((abid / "bin-images").glob("*.jpg"))))) as im:
        photo = im.convert("RGB")
    # the sensor's pixels, and the tag that says how to turn them back upright
    stored = photo.transpose(_inverse(turn))
    tagged = transforms.open_rgb(_tagged(stored, orientation), 10_000)
    plain = transforms.open_rgb(_tagged(photo, 1), 10_000)
    assert tagged.size == plain.size == photo.size
    diff = torch.tensor(
        [abs(a - b) for a, b in zip(tagged.tobytes()[::97], plain.tobytes()[::97], strict=True)],
        dtype=torch.float32,
    )
    assert diff.mean() < 6  # the same photo (two JPEG encodings apart)


def _inverse(turn):
    return {
        Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
        Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    }.get(turn, turn)


def test_training_reads_photos_upright(source, tmp_path):
    """The datamodule's decode path applies the tag: a photo stored sideways with
    orientation 6 gives the training tensor of the upright photo."""
    dm = _datamodule(source, tmp_path)
    ds = dm.datasets["val"]
    path = ds.paths[0]
    upright = transforms.open_rgb(path, 64)
    before = ds[0][0]
    with Image.open(path) as im:
        sideways = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    path.write_bytes(_tagged(sideways, 6))
    after = ds[0][0]
    assert upright.size == transforms.open_rgb(path, 64).size
    assert (after - before).abs().mean() < 0.15  # the same picture, not a turned one
    turned = transforms.build(dm.preprocess)(sideways)
    assert (turned - before).abs().mean() > 2 * (after - before).abs().mean()
