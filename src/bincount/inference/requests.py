"""`input_fn` and `output_fn`'s side: parsing, checking and decoding a request's images.

`input_fn(body, content_type)`: an image (`image/jpeg`, `image/png`, `image/webp`,
`image/bmp`, `image/gif`, `image/tiff`, any other `image/*` or `application/x-image`: the
format is read from the bytes), or `application/json` with `{"image": BASE64, "expected": 3}`
or `{"images": [BASE64 or {"image": BASE64, "expected": 3}, ...]}` (base64 may hold line
breaks, as `base64` prints it; the JSON is bounded in depth and number size by
`bincount.jsonsafe`), checked against the limits of conf/serve.yaml (body size, pixels per
image and per request) from the images' headers alone; bad input raises `InputError` (a 4xx
status and a one-line message saying what was wrong). `decode_image` decodes the checked bytes
as training did, turned upright by their EXIF orientation. `output_fn(prediction, accept)`:
JSON.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import re
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from bincount import jsonsafe
from bincount.data import transforms
from bincount.errors import BincountError
from bincount.settings import settings

# Content types answered (any other image/* too: the format is read from the bytes).
IMAGE_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/gif",
    "image/tiff",
    "application/x-image",
)
JSON_TYPE = "application/json"
# Decoders tried on request bodies: only these (PIL would otherwise try every plugin it has).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"
# Digits of an expected quantity: more is no count of a bin (and int() of thousands is slow).
MAX_EXPECTED_DIGITS = 9


class InputError(BincountError):
    """A request the model cannot answer; `status` is the HTTP status it deserves."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Request:
    """Checked image bytes (decoded by `predict_fn`, at the model's size), the expected quantity
    of each (or None), their names in error messages, and whether a list was sent."""

    images: list[bytes]
    expected: list[int | None]
    batch: bool = False
    names: list[str] = dataclasses.field(default_factory=lambda: ["the body"])
    # Pixels the images' headers claim, summed (limits.max_request_pixels bounds it).
    pixels: int = 0


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_image_type(media: str) -> bool:
    return media in IMAGE_TYPES or (media.startswith("image/") and len(media) > len("image/"))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}...({len(text)} characters)"


def parse_expected(value: Any, where: str = "expected") -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit()):
            raise InputError(
                f"{where}={_short(value)} is not a count: send a whole number >= 0, e.g. 3"
            )
        # int() of thousands of digits is slow (and refused past 4,300): the length first
        value = int(digits) if len(digits) <= MAX_EXPECTED_DIGITS else 10**MAX_EXPECTED_DIGITS
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(
            f"{where}={_short(value)} is not a count: send a whole number >= 0, e.g. 3"
        )
    if value >= 10**MAX_EXPECTED_DIGITS:
        raise InputError(
            f"{where}={_short(value)} is too large for a count: send a whole number below "
            f"10**{MAX_EXPECTED_DIGITS}, e.g. 3"
        )
    return value


def check_image(data: bytes, limits: dict, what: str = "the body") -> bytes:
    """Check image bytes from their header (format, dimensions) without decoding them."""
    image_size(data, limits, what)
    return data


def image_size(data: bytes, limits: dict, what: str = "the body") -> tuple[int, int]:
    """(width, height) of checked image bytes, read from the header (PIL opens lazily)."""
    if not data:
        raise InputError(f"{what} is empty (0 bytes): give a photo ({FORMAT_NAMES})")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            width, height = probe.size
    except UnidentifiedImageError:
        raise InputError(_not_an_image(data, what)) from None
    except Image.DecompressionBombError as e:  # beyond PIL's own hard limit
        raise InputError(
            f"{what} is far too large an image ({e}); the limit is {limits['max_pixels']} "
            "pixels (limits.max_pixels in conf/serve.yaml): send a smaller photo",
            413,
        ) from None
    except Exception as e:
        raise InputError(
            f"{what} is not a readable image ({_reason(e)}): give a photo ({FORMAT_NAMES})"
        ) from None
    max_pixels = int(limits["max_pixels"])
    if width * height > max_pixels:
        raise InputError(
            f"{what} is {width}x{height} pixels, more than the limit of {max_pixels} "
            "(limits.max_pixels in conf/serve.yaml): send a smaller photo",
            413,
        )
    return width, height


def check_budget(sizes: list[tuple[int, int]], limits: dict) -> int:
    """The pixels of a request's images, summed; 413 over limits.max_request_pixels."""
    pixels = sum(w * h for w, h in sizes)
    budget = limits.get("max_request_pixels")
    if budget is not None and pixels > int(budget):
        raise InputError(
            f"the request's {len(sizes)} image(s) hold {pixels} pixels in all, more than the "
            f"budget of {int(budget)} (limits.max_request_pixels in conf/serve.yaml): send "
            "fewer or smaller images per request",
            413,
        )
    return pixels


def _reason(e: Exception) -> str:
    """PIL's words for a failure, on one line, without object addresses."""
    text = re.sub(r"<[^<>]* at 0x[0-9a-f]+>", "the bytes", " ".join(str(e).split()))
    return text[:160] or type(e).__name__


def _not_an_image(data: bytes, what: str) -> str:
    return (
        f"{what} is not an image in a format read here ({len(data)} bytes, not "
        f"{FORMAT_NAMES}): give a photo in one of them"
    )


def decode_image(data: bytes, size: int, what: str = "the body") -> Image.Image:
    """Decode checked image bytes as training did (PIL draft at `size`, RGB), turned upright
    by their EXIF orientation (phones and cameras store a photo sideways with a tag saying so),
    then shrink a large image at once: JPEG decodes at a reduced scale (draft); PNG and others
    decode in full, then are box-reduced by an integer factor that keeps at least twice `size`
    on the short side (what the letterbox's own resize, reducing_gap=2, reduces by anyway), so
    a request holds one full-size image at a time."""
    if not data:
        raise InputError(f"{what} is empty (0 bytes): give a photo ({FORMAT_NAMES})")
    try:
        im = transforms.open_rgb(data, size)
        im = ImageOps.exif_transpose(im)  # a no-op without the tag (or once applied)
        factor = min(im.size) // (2 * size)
        return im.reduce(factor) if factor >= 2 else im
    except UnidentifiedImageError:
        raise InputError(_not_an_image(data, what)) from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on broken data
        raise InputError(
            f"{what} does not decode: the image is truncated or corrupt ({_reason(e)}); "
            "give a complete photo"
        ) from None


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a base64 string, not {type(value).__name__}")
    if value.startswith("data:") and "," in value:  # a data URL, as a browser makes them
        value = value.split(",", 1)[1]
    value = "".join(value.split())  # line breaks (`base64` wraps at 76) and spaces: ignored
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64: encode the image bytes") from None


def _json_items(body: bytes | str, limits: dict) -> tuple[list[tuple[bytes, Any, str]], bool]:
    """[(image bytes, expected, name)] from a JSON body, and whether it held a list."""
    try:
        doc = jsonsafe.loads(body, "the body")
    except BincountError as e:
        raise InputError(f'{e}: send {{"image": BASE64}}') from None
    shape = 'send {"image": BASE64, "expected": 3} or {"images": [BASE64, ...]}'
    if not isinstance(doc, dict):
        raise InputError(f"the JSON body is a {type(doc).__name__}, not an object: {shape}")
    if "image" in doc:
        return [(_b64(doc["image"], "image"), doc.get("expected"), "image")], False
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise InputError(f"the JSON body has no 'image' or non-empty 'images' list: {shape}")
    if len(images) > int(limits["max_images"]):
        raise InputError(
            f"{len(images)} images in one request, more than {limits['max_images']} "
            "(limits.max_images): split the request",
            413,
        )
    expected = doc.get("expected")
    if expected is not None and (not isinstance(expected, list) or len(expected) != len(images)):
        raise InputError("'expected' must be a list as long as 'images' (or give it per image)")
    items = []
    for i, item in enumerate(images):
        name = f"images[{i}]"
        exp = expected[i] if expected else None
        if isinstance(item, dict):
            exp = item.get("expected", exp)
            item = item.get("image")
        items.append((_b64(item, name), exp, name))
    return items, True


def input_fn(body: bytes | str, content_type: str | None) -> Request:
    """Check a request body against the limits of conf/serve.yaml; InputError if it is bad."""
    limits = settings()["limits"]
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = bytes(body or b"")
    if len(body) > int(limits["max_body_bytes"]):
        raise InputError(
            f"the body is {len(body)} bytes, more than {limits['max_body_bytes']} "
            "(limits.max_body_bytes in conf/serve.yaml)",
            413,
        )
    media = _media_type(content_type)
    if is_image_type(media):
        pixels = check_budget([image_size(body, limits)], limits)
        return Request([body], [None], pixels=pixels)
    if media == JSON_TYPE:
        if not body:
            raise InputError('the body is empty: send {"image": BASE64}')
        items, batch = _json_items(body, limits)
        pixels = check_budget([image_size(data, limits, name) for data, _, name in items], limits)
        images = [data for data, _, _ in items]
        expected = [parse_expected(e, f"{name}.expected") for _, e, name in items]
        return Request(images, expected, batch, [name for _, _, name in items], pixels)
    accepted = ", ".join((*IMAGE_TYPES, "image/*", JSON_TYPE))
    raise InputError(
        f"content type {_short(content_type or '(none)')} is not supported: use one of {accepted}",
        415,
    )


def with_expected(request: Request, expected: Any) -> Request:
    """The request with one expected quantity for every image (e.g. from `?expected=3`); an
    image that states another `expected` in the body is a conflict (400), never overridden."""
    value = parse_expected(expected)
    if value is None:
        return request
    for name, own in zip(request.names, request.expected, strict=False):
        if own is not None and own != value:
            raise InputError(
                f"expected={value} (query or custom attributes) and {name}.expected={own} "
                "disagree: give the expected quantity in one place"
            )
    return dataclasses.replace(request, expected=[value] * len(request.images))


def check_accept(accept: str | None) -> None:
    """Refuse (406) an Accept header that JSON does not satisfy; `output_fn` answers JSON."""
    kinds = [_media_type(part) for part in (accept or "").split(",")]
    if not any(k in ("", "*/*", JSON_TYPE, "application/*") for k in kinds):
        raise InputError(f"cannot answer in {accept!r}: accept {JSON_TYPE}", 406)


def output_fn(prediction: dict, accept: str | None) -> str:
    check_accept(accept)
    return json.dumps(prediction)
