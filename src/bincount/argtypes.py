"""argparse types for the console script's numbers: a bad one is a one-line usage error
(`error: bincount data describe: argument --samples: -1 is not ...`) before any work."""

from __future__ import annotations

import argparse


def whole(low: int = 0):
    """A whole number >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}: use {low} or more")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


positive_int = whole(1)  # a count of things: at least 1 (batch sizes, workers, tries, limits)


def fraction(text: str) -> float:
    """A share strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1 (e.g. 0.2)")
    return value


def counts(text: str) -> list[int]:
    """`1-5`, `0,2,4` or `1-3,7` -> sorted counts."""
    found: set[int] = set()
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            low_n, high_n = int(low), int(high if dash else low)
            if low_n < 0 or high_n < low_n:
                raise ValueError
            found.update(range(low_n, high_n + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of counts: write e.g. 1-5, 0,2,4 or 1-3,7"
        ) from None
    return sorted(found)
