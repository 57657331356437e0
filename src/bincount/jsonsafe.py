"""JSON from a client or a file, bounded: nesting depth, the length of numbers, and no NaN or
Infinity (not JSON, and not a quantity, weight or size).

`json.loads` alone recurses once per level (5,000 nested lists raise RecursionError), turns a
5,000-digit number into a ValueError (Python's int limit), and reads `NaN`: each a 500 or a
traceback where the sender deserves one line. `loads` checks the nesting before parsing (string
contents skipped), the numbers while parsing, and raises `BincountError` naming what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from bincount.errors import BincountError

MAX_DEPTH = 32  # what bincount reads nests 3 deep: {"images": [{"image": ...}]}
MAX_NUMBER_CHARS = 100  # digits, sign, point and exponent of one number

# A JSON string, unrolled for speed (a 20 MB base64 string in one pass).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped)."""
    brackets = _STRING.sub(b'""', data).translate(None, _NOT_BRACKETS)
    if len(brackets) < 2:
        return 0
    b = np.frombuffer(brackets, np.uint8)
    steps = np.where((b == ord("[")) | (b == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps, dtype=np.int32).max())


def _number(kind: str, convert):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise BincountError(
                f"a number of {len(text)} characters ({text[:12]}...): numbers may have at most "
                f"{MAX_NUMBER_CHARS}"
            )
        value = convert(text)
        if kind == "float" and not math.isfinite(value):
            raise BincountError(f"the number {text} is out of range: use a finite number")
        return value

    return parse


def _constant(name: str):
    raise BincountError(f"{name} is not a number JSON allows: use a finite number or null")


def loads(
    data: bytes | str, what: str = "the JSON", max_depth: int = MAX_DEPTH, nan: bool = False
) -> Any:
    """Parse `data`; BincountError ("<what> is not valid JSON (...)") when it is not JSON, nests
    deeper than `max_depth`, or holds a number that is too long, infinite or NaN (`nan=True`:
    NaN and Infinity are read as floats, for a caller that checks and names each field)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    # Fewer brackets than the limit (strings included) cannot nest deeper: the usual case,
    # checked without scanning the strings (a 20 MB base64 image).
    few = len(raw.translate(None, _NOT_BRACKETS)) <= max_depth
    deepest = 0 if few else depth(raw)
    if deepest > max_depth:
        raise BincountError(
            f"{what} nests {deepest} levels deep, more than {max_depth}: send a flat document"
        )
    try:
        return json.loads(
            raw,
            parse_int=_number("int", int),
            parse_float=float if nan else _number("float", float),
            parse_constant=float if nan else _constant,
        )
    except BincountError as e:
        raise BincountError(f"{what} is not usable JSON: {e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, a bad UTF-8 byte, ...
        raise BincountError(f"{what} is not valid JSON ({_one_line(e)})") from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200]
