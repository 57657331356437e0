"""The `bincount` console script: parses arguments and calls the package's modules."""

from __future__ import annotations

import argparse
import sys

from bincount import __version__
from bincount.errors import BincountError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bincount", description="Count the objects in photos of warehouse bins."
    )
    parser.add_argument("--version", action="version", version=f"bincount {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except BincountError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
