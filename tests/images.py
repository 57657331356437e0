"""Images made for tests from real photos (tests/ is on sys.path: `from images import ...`)."""

from __future__ import annotations


def bomb_jpeg(photo: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header claims width x height pixels (a decompression bomb)."""
    data = bytearray(photo)
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):  # start of frame: precision, height, width
            data[i + 5 : i + 7] = height.to_bytes(2, "big")
            data[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(data)
        i += 2 + length
    raise AssertionError("no start-of-frame marker in the photo")
