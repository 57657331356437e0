"""Image preprocessing that keeps the whole bin in view.

Every image is made square in one of two ways (`preprocess["resize"]`, `data.resize`):
`letterbox` scales it so its longer side fits `image_size`, then pads it to a square; `squash`
resizes it to image_size x image_size, ignoring the aspect ratio (as the photos of
../shared/abid-224 were). Nothing is ever cropped, because a crop can cut objects out and
change the true count. Training adds flips and mild colour jitter only. The same `preprocess`
dict (resize, size, mean, std) is stored in every checkpoint, so inference rebuilds exactly the
evaluation transform; a checkpoint without `resize` (older ones) letterboxes.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

from bincount.errors import BincountError
from bincount.preprocess import resize_mode


#: the EXIF tag that says how the camera was held (1: upright; 2-8: flipped and/or turned)
ORIENTATION = 0x0112

#: what decoding a damaged or changed photo raises (PIL: OSError, UnidentifiedImageError;
#: truncated or odd data: ValueError, SyntaxError, struct errors, a decompression bomb)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def upright(im: Image.Image) -> Image.Image:
    """The photo as it was seen: its EXIF orientation applied (phones and many cameras store
    the pixels as the sensor read them and the turn in a tag)."""
    try:
        orientation = im.getexif().get(ORIENTATION, 1)
    except DECODE_ERRORS:  # unreadable EXIF: the pixels as they are
        return im
    if orientation in (None, 1):
        return im
    return ImageOps.exif_transpose(im)


def open_rgb(source: str | Path | bytes, size: int) -> Image.Image:
    """Decode a photo at the smallest scale that is still at least `size` (PIL draft), upright
    (its EXIF orientation applied), in RGB."""
    im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    im.draft("RGB", (size, size))
    return upright(im).convert("RGB")


class Letterbox:
    """Resize the longer side to `size` (keeping the aspect ratio) and pad to size x size."""

    def __init__(self, size: int, fill: tuple[int, int, int] = (0, 0, 0)):
        self.size = size
        self.fill = fill

    def __call__(self, im: Image.Image) -> Image.Image:
        w, h = im.size
        scale = self.size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=2.0)
        if (nw, nh) == (self.size, self.size):
            return im
        canvas = Image.new("RGB", (self.size, self.size), self.fill)
        canvas.paste(im, ((self.size - nw) // 2, (self.size - nh) // 2))
        return canvas

    def __repr__(self) -> str:
        return f"Letterbox(size={self.size})"


class Squash:
    """Resize to size x size, ignoring the aspect ratio (no padding)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, im: Image.Image) -> Image.Image:
        if im.size == (self.size, self.size):
            return im
        return im.resize((self.size, self.size), Image.BILINEAR, reducing_gap=2.0)

    def __repr__(self) -> str:
        return f"Squash(size={self.size})"


def resizer(preprocess: dict) -> Letterbox | Squash:
    """The step that makes an image square as `preprocess` says."""
    size = int(preprocess["image_size"])
    if resize_mode(preprocess) == "squash":
        return Squash(size)
    return Letterbox(size, letterbox_fill(preprocess))


def letterbox_fill(preprocess: dict) -> tuple[int, int, int]:
    """The padding colour: the mean, so pads become ~0 after normalisation."""
    return tuple(round(255 * m) for m in preprocess["mean"])


class RandomRot90:
    """Rotate by 0, 90, 180 or 270 degrees at random: a bin seen from above holds as many
    objects whichever way round the photo is (with the flips: all eight symmetries of a square)."""

    TURNS = (
        None,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
    )

    def __call__(self, im: Image.Image) -> Image.Image:
        turn = self.TURNS[int(torch.randint(4, ()))]
        return im if turn is None else im.transpose(turn)

    def __repr__(self) -> str:
        return "RandomRot90()"


def build(
    preprocess: dict, train: bool = False, jitter: float = 0.2, rotate: bool = False
) -> v2.Compose:
    """The transform from a PIL image to a normalised float tensor (C, H, W)."""
    mean, std = preprocess["mean"], preprocess["std"]
    steps: list = [resizer(preprocess)]
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
        if rotate:
            steps.append(RandomRot90())
        if jitter:
            steps.append(v2.ColorJitter(jitter, jitter, jitter, min(jitter / 4, 0.05)))
    steps += [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ]
    return v2.Compose(steps)
