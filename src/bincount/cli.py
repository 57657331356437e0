"""The `bincount` console script: parses arguments and calls the package's modules.

Subcommands live in `bincount.commands.<area>` modules, each with `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from bincount import __version__, commands
from bincount.errors import BincountError


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (like every other error of bincount)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bincount", description="Count the objects in photos of warehouse bins.")
    parser.add_argument("--version", action="version", version=f"bincount {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
