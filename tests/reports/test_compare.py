"""`bincount compare` on copies of the session's real trained run (settings, command line,
objective and start time edited per copy, as a sweep's trials would differ): the columns of what
varies, ranking, --sort/--metric/--columns, the best run and its command, number formats,
failed trials and their error line, progress by start time, S3 refused. Real sweeps compared
end to end are in tests/test_sweep.py."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from bincount import rundir
from bincount.cli import main
from bincount.errors import BincountError
from bincount.reports.compare import by_start, collect, reproduce

PNG = b"\x89PNG\r\n\x1a\n"


def fake_trial(trained_run, dest, objective, settings=None, started=None, metrics=None):
    """A copy of a real run as if launched with `settings` (dotted key -> value, in its
    config.yaml and on its command line) and scoring `objective`."""
    run = shutil.copytree(trained_run, dest, ignore=shutil.ignore_patterns("*.ckpt"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    for key, value in (settings or {}).items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
        overrides.append(f"{key}={value}")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    m = json.loads((run / "metrics.json").read_text())
    m["objective"]["value"] = objective
    m["val"]["val/acc"] = objective
    m["val"].update(metrics or {})
    (run / "metrics.json").write_text(json.dumps(m))
    if started is not None:
        for f in (
            run / ".hydra" / "hydra.yaml",
            run / ".hydra" / "config.yaml",
            run / "config.yaml",
        ):
            os.utime(f, (started, started))
    return run


def failed_trial(trained_run, dest, settings, error=None):
    """A trial folder as Hydra leaves it when train() raised: .hydra, config.yaml, and the
    error.txt the sweepers write (none: crashed, or still running)."""
    dest.mkdir(parents=True)
    shutil.copytree(trained_run / ".hydra", dest / ".hydra")
    overrides = yaml.safe_load((dest / ".hydra" / "overrides.yaml").read_text())
    overrides += [f"{k}={v}" for k, v in settings.items()]
    (dest / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    cfg.update(settings)
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    if error:
        rundir.write_error(dest, error, "Traceback (most recent call last):\n  ...")
    return dest


@pytest.fixture
def sweep(trained_run, tmp_path):
    """A multirun folder: trials 0..3 of a 2x2 grid, trial 4 failed, trial 5 crashed."""
    root = tmp_path / "multirun"
    grid = [(0.001, 16, 0.30), (0.001, 32, 0.55), (0.01, 16, 0.45), (0.01, 32, 0.20)]
    for i, (lr, bs, obj) in enumerate(grid):
        fake_trial(trained_run, root / str(i), obj, {"lr": lr, "batch_size": bs})
    failed_trial(trained_run, root / "4", {"lr": 0.1, "batch_size": 16}, "error: boom: fix it")
    failed_trial(trained_run, root / "5", {"lr": 0.1, "batch_size": 32})
    return root


def rows_of(out: str, n: int) -> list[list[str]]:
    """The table's rows (marker column dropped), split into cells."""
    return [line[1:].split() for line in out.splitlines()[3 : 3 + n]]


def test_table_of_what_varies_ranked_with_the_best_and_failed_runs(sweep, capsys):
    assert main(["compare", str(sweep)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("4 runs, by val/acc (maximize), best first")
    header = lines[1].split()
    assert header[:5] == ["run", "lr", "batch_size", "objective", "val/acc"]
    assert header[-2:] == ["epochs", "time"] and "test/acc" in header
    assert "model.net.backbone" not in header  # the same in every run: not a column
    rows = rows_of(out, 4)
    assert [r[0] for r in rows] == ["1", "2", "0", "3"]
    assert [r[3] for r in rows] == ["0.5500", "0.4500", "0.3000", "0.2000"]
    assert rows[0][1:3] == ["0.001", "32"]
    marked = [line for line in lines[3:7] if line.startswith("*")]
    assert marked == [lines[3]]  # the best, and only it
    assert "best: 1  val/acc=0.5500 (maximize)" in lines
    command = next(line for line in lines if line.startswith("reproduce: "))
    assert command.startswith("reproduce: python train.py experiment=smoke")
    assert command.endswith("lr=0.001 batch_size=32")
    assert "2 not compared (failed or still running):" in lines
    assert "  4 (lr=0.1 batch_size=16): error: boom: fix it" in lines
    assert any(
        line.startswith("  5 (lr=0.1 batch_size=32): crashed or still running") for line in lines
    )

    out_dir = sweep / "compare"
    for name in ("metric_vs_lr.png", "learning_curves.png", "progress.png"):
        assert (out_dir / name).read_bytes().startswith(PNG), name
    md = (out_dir / "compare.md").read_text()
    assert "| * | 1 | 0.001 | 32 | 0.5500 |" in md
    assert "- 4 (lr=0.1 batch_size=16): error: boom: fix it" in md
    assert "lr=0.001 batch_size=32" in md.split("## Best run", 1)[1]
    assert "data:image/png;base64," in (out_dir / "compare.html").read_text()


def test_a_swept_key_is_a_column(trained_run, tmp_path, capsys):
    for i, head in enumerate(["classify", "ordinal"]):
        fake_trial(trained_run, tmp_path / "s" / str(i), 0.3 + 0.1 * i, {"model.net.head": head})
    assert main(["compare", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["run", "model.net.head", "objective"]
    assert [r[:2] for r in rows_of(out, 2)] == [["1", "ordinal"], ["0", "classify"]]
    assert "reproduce: python train.py" in out and out.count("model.net.head=ordinal") == 1


def test_metric_sort_and_columns_flags(sweep, tmp_path, capsys):
    for i, macro in enumerate([0.9, 0.1, 0.5, 0.7]):  # best val/macro_acc: trial 0
        m = json.loads((sweep / str(i) / "metrics.json").read_text())
        m["val"]["val/macro_acc"] = macro
        (sweep / str(i) / "metrics.json").write_text(json.dumps(m))
    out_dir = ["-o", str(tmp_path / "cmp")]

    assert main(["compare", str(sweep), "--metric", "val/macro_acc", *out_dir]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 runs, by val/macro_acc (maximize)")
    assert out.splitlines()[3].startswith("*") and rows_of(out, 1)[0][0] == "0"
    assert "best: 0  val/macro_acc=0.9000 (maximize)" in out

    assert (
        main(["compare", str(sweep), "--sort", "lr:desc", "--columns", "lr,val/acc", *out_dir]) == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["run", "lr", "val/acc"]
    rows = rows_of(out, 4)
    assert [r[1] for r in rows] == ["0.01", "0.01", "0.001", "0.001"]
    assert [line[0] for line in out.splitlines()[3:7]] == [" ", " ", "*", " "]  # still trial 1

    assert main(["compare", str(sweep), "--sort", "batch_size", *out_dir]) == 0
    assert [r[2] for r in rows_of(capsys.readouterr().out, 4)] == ["16", "16", "32", "32"]

    for bad, said in (
        (["--columns", "lr,no.such_key"], "--columns no.such_key: no run has it"),
        (["--metric", "val/nope"], "--metric val/nope: no run has it; use one of objective"),
        (["--sort", "lr:up"], "--sort lr:up: add :asc or :desc"),
    ):
        assert main(["compare", str(sweep), *bad, *out_dir]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1


def test_one_number_format_per_column(trained_run, tmp_path, capsys):
    for i, lr in enumerate([0.01, 0.001, 0.0075]):
        fake_trial(trained_run, tmp_path / "a" / str(i), 0.5 - 0.1 * i, {"lr": lr})
    assert main(["compare", str(tmp_path / "a")]) == 0
    rows = rows_of(capsys.readouterr().out, 3)
    assert [r[1] for r in rows] == ["0.01", "0.001", "0.0075"]  # 3 significant digits
    assert [r[2] for r in rows] == ["0.5000", "0.4000", "0.3000"]  # metrics: 4 decimals
    for i, lr in enumerate([1e-5, 0.0003]):
        fake_trial(trained_run, tmp_path / "b" / str(i), 0.5 - 0.1 * i, {"lr": lr})
    assert main(["compare", str(tmp_path / "b")]) == 0
    assert [r[1] for r in rows_of(capsys.readouterr().out, 2)] == ["1.00e-05", "3.00e-04"]


def test_progress_follows_start_time_across_sweeps(trained_run, tmp_path):
    t0 = 1_700_000_000
    started = {("a", 0): t0 + 30, ("a", 1): t0 + 40, ("b", 0): t0, ("b", 1): t0 + 50}
    for (sweep, i), when in started.items():
        fake_trial(trained_run, tmp_path / sweep / str(i), 0.1 * (i + 1), started=when)
    runs = collect([tmp_path / "a", tmp_path / "b"])
    order = [f"{t.path.parent.name}/{t.path.name}" for t in by_start(runs)]
    assert order == ["b/0", "a/0", "a/1", "b/1"]  # not by job number


def test_a_run_without_its_command_line_is_reproduced_from_its_config(sweep):
    shutil.rmtree(sweep / "1" / ".hydra")  # e.g. a SageMaker job's run folder
    runs = collect([sweep])
    assert runs.best.path.name == "1"
    command = reproduce(runs.best, runs)
    assert command.startswith("python train.py lr=0.001 batch_size=32 model.net.backbone=")
    assert command.endswith("# from config.yaml: the command line was not recorded")


def test_s3_runs_are_pulled_first(capsys):
    assert main(["compare", "s3://my-bucket/bincount/tuning-123"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "s3://my-bucket/bincount/tuning-123 is on S3" in err  # not mangled to s3:/
    assert "bincount pull JOB_NAME" in err and "bincount pull tuning-123" in err


def test_minimized_objective_sorts_ascending(trained_run, tmp_path):
    for i, obj in enumerate([0.9, 0.4, 0.7]):
        run = fake_trial(trained_run, tmp_path / "m" / str(i), obj, {"lr": 0.001 * (i + 1)})
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["objective"]["name"] = "val/rmse"
        (run / "metrics.json").write_text(json.dumps(metrics))
    runs = collect([tmp_path / "m"])
    assert runs.direction == "minimize"
    assert [t.path.name for t in runs.done] == ["1", "2", "0"]


def test_several_folders_name_runs_by_their_path(sweep, trained_run, tmp_path, capsys):
    single = fake_trial(trained_run, tmp_path / "single", 0.9, {"lr": 0.003, "batch_size": 64})
    assert main(["compare", str(sweep), str(single), "-o", str(tmp_path / "cmp")]) == 0
    rows = rows_of(capsys.readouterr().out, 2)
    assert rows[0][0] == "single"
    assert rows[1][0] == "multirun/1"


def test_folder_without_runs_is_said_and_others_listed(sweep, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    assert main(["compare", str(empty), str(sweep), "-o", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert f"no runs in {empty}" in out
    assert out.startswith("4 runs")


def test_nothing_to_compare_is_an_error(tmp_path, trained_run, capsys):
    failed_trial(trained_run, tmp_path / "only_failed" / "0", {"lr": 0.1}, "error: boom")
    with pytest.raises(BincountError, match="0: error: boom"):
        collect([tmp_path / "only_failed"])
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no runs (no folder with config.yaml)" in err and "Traceback" not in err


def test_runs_are_named_below_the_folders_common_parent(tmp_path):
    from bincount.reports.compare import common_base, default_output

    a, b = tmp_path / "sweeps" / "a", tmp_path / "sweeps" / "b"
    assert common_base([a]) == a.resolve()  # one folder: its runs by their path inside it
    assert common_base([a, b]) == (tmp_path / "sweeps").resolve()
    # one folder inside another: named from above both, so the outer one's runs have a name
    assert common_base([tmp_path / "sweeps", a]) == tmp_path.resolve()
    assert default_output([a, b]) == a / "compare"
