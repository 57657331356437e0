"""Subcommands of the `bincount` console script, one module per area.

Each module defines `register(subparsers)`, which adds its parser(s) and returns them by
command (`{"data fetch": parser, ...}`), and the functions that run them (called with the
parsed args; they return an exit code). Which function runs which command is the table in
`bincount.cli`. Keep them thin: parse, call the package, print.
"""
