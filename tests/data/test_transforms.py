"""Letterboxing keeps the whole bin: nothing is cropped, the aspect ratio is kept."""

from __future__ import annotations

import torch
from PIL import Image

from bincount import preprocess
from bincount.data import transforms

SPEC = preprocess.spec(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_letterbox_pads_instead_of_cropping():
    im = Image.new("RGB", (200, 100), (255, 255, 255))  # white, wide
    out = transforms.Letterbox(64, fill=(0, 0, 0))(im)
    assert out.size == (64, 64)
    px = out.load()
    assert px[32, 32] == (255, 255, 255)  # the image is in the middle
    assert px[32, 0] == (0, 0, 0) and px[32, 63] == (0, 0, 0)  # padded above and below
    assert px[0, 32] == (255, 255, 255) and px[63, 32] == (255, 255, 255)  # full width kept


def test_eval_transform_is_deterministic_and_normalised(abid):
    im = transforms.open_rgb(next((abid / "bin-images").glob("*.jpg")), 64)
    tf = transforms.build(SPEC, train=False)
    a, b = tf(im), tf(im)
    assert a.shape == (3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert a.min() >= -1.0 and a.max() <= 1.0


def test_draft_decoding_keeps_at_least_the_requested_size(abid):
    path = next((abid / "bin-images").glob("*.jpg"))
    full = Image.open(path).size
    small = transforms.open_rgb(path, 64).size
    assert max(small) >= 64 and max(small) <= max(full)


def test_rotate_adds_quarter_turns_to_the_flips():
    pre = preprocess.spec(32, (0.5,) * 3, (0.5,) * 3)
    im = Image.new("RGB", (32, 32))
    im.putpixel((1, 0), (255, 255, 255))  # off the diagonal: each symmetry puts it elsewhere

    def places(rotate: bool) -> set:
        tf = transforms.build(pre, train=True, jitter=0.0, rotate=rotate)
        torch.manual_seed(0)
        seen = set()
        for _ in range(96):
            white = tf(im)[0] > 0.9
            assert int(white.sum()) == 1  # moved, never resampled or cropped
            seen.add(tuple(white.nonzero()[0].tolist()))
        return seen

    assert len(places(rotate=False)) == 4  # the flips
    assert len(places(rotate=True)) == 8  # all eight symmetries of the square
