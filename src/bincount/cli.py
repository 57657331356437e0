"""The `bincount` console script: parses arguments and calls the package's modules.

`COMMANDS` below is every subcommand and the function that runs it. The functions live in
`bincount.commands.<area>` modules, whose `register(subparsers)` adds the area's parsers.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import Callable

from bincount import __version__
from bincount.commands import (
    cache,
    calibrate,
    cleanup,
    compare,
    data,
    deploy,
    evaluate,
    export,
    orders,
    predict,
    pull,
    report,
    serve,
)
from bincount.errors import BincountError

# Every subcommand -> the function that runs it (in the order of `bincount --help`).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "cache images": cache.run_images,
    "calibrate": calibrate.run,
    "cleanup": cleanup.run,
    "compare": compare.run,
    "data fetch": data.run_fetch,
    "data describe": data.run_describe,
    "data upload": data.run_upload,
    "deploy": deploy.run,
    "evaluate": evaluate.run,
    "export": export.run,
    "orders": orders.run_orders,
    "verify": orders.run_verify,
    "predict": predict.run,
    "pull": pull.run,
    "report": report.run,
    "serve": serve.run,
}


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (like every other error of bincount)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bincount", description="Count the objects in photos of warehouse bins.")
    parser.add_argument("--version", action="version", version=f"bincount {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for module in dict.fromkeys(inspect.getmodule(run) for run in COMMANDS.values()):
        parsers.update(module.register(sub))
    if set(parsers) != set(COMMANDS):
        raise AssertionError(
            f"commands without a parser or function: {set(parsers) ^ set(COMMANDS)}"
        )
    for name, run in COMMANDS.items():
        parsers[name].set_defaults(func=run)
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
