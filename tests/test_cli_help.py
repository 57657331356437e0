"""One vocabulary for the console script: every option of every subcommand has help text,
outputs are -o/--output (old --out only as a hidden alias), a model is MODEL, and every
`--help` renders."""

from __future__ import annotations

import argparse

import pytest

from bincount import cli

OLD_MODEL_METAVARS = {"RUN_OR_CKPT", "CKPT_OR_RUN", "RUN_OR_S3"}


def parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from parsers(sub)


ALL = list(parsers(cli.build_parser()))


def own_actions(parser):
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def test_every_option_has_help():
    missing = [
        f"{p.prog} {a.option_strings[0] if a.option_strings else a.metavar or a.dest}"
        for p in ALL
        for a in own_actions(p)
        if not a.help
    ]
    assert len(ALL) > 15 and not missing, missing


def test_outputs_are_dash_o_and_models_are_MODEL():
    for p in ALL:
        for a in own_actions(p):
            if "--out" in a.option_strings:
                assert a.help == argparse.SUPPRESS and a.dest == "output", p.prog
            if "--output" in a.option_strings:
                assert "-o" in a.option_strings, p.prog
            assert str(a.metavar).split()[0] not in OLD_MODEL_METAVARS, (p.prog, a.metavar)
    models = {p.prog: a.metavar for p in ALL for a in own_actions(p) if a.dest in ("model", "run")}
    for prog in ("serve", "export", "evaluate", "calibrate", "orders", "verify"):
        assert models[f"bincount {prog}"] == "MODEL", prog


@pytest.mark.parametrize("prog", [p.prog for p in ALL])
def test_every_help_renders(prog, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*prog.split()[1:], "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {prog}")


def test_old_out_spelling_still_works():
    args = cli.build_parser().parse_args(["export", "run", "--out", "somewhere"])
    assert args.output == "somewhere"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["serve", "run", "--port", "abc"], "bincount serve: argument --port: invalid int"),
        (["compare", "runs", "--top", "-2"], "argument --top: -2 is below 0"),
        (["data", "describe", "d", "--samples", "-1"], "argument --samples: -1 is below 0"),
        (["data", "upload", "d", "s3://b/p", "--concurrency", "0"], "0 is below 1"),
        (["serve", "run", "--threads", "0"], "argument --threads: 0 is below 1"),
        (["predict", "run", "x.jpg", "--batch-size", "0"], "argument --batch-size: 0 is below 1"),
        (["evaluate", "run", "--batch-size", "-1"], "argument --batch-size: -1 is below 1"),
    ],
)
def test_a_usage_error_is_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: bincount ") and words in err and "--help" in err


def test_every_subcommand_runs_the_function_of_the_table():
    """cli.COMMANDS is the one table from subcommand to function: every leaf parser runs its
    entry, and every entry has a parser."""
    funcs = {
        p.prog.removeprefix("bincount "): p.get_default("func")
        for p in ALL
        if p.get_default("func") in set(cli.COMMANDS.values())
    }
    assert funcs == cli.COMMANDS
