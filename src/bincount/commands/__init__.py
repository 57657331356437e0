"""Subcommands of the `bincount` console script, one module per area.

Each module defines `register(subparsers)`, which adds its parser(s) and sets `func` (called
with the parsed args; returns an exit code). Keep them thin: parse, call the package, print.
"""
