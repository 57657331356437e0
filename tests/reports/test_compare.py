"""`bincount compare` on copies of the session's real trained run (lr, batch size and objective
edited per copy): the table's order, the plots and report files, crashed and empty folders.
The real 2x2 grid multirun compared end to end is in tests/test_sweep.py (slow)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from bincount.cli import main
from bincount.errors import BincountError
from bincount.reports.compare import collect

PNG = b"\x89PNG\r\n\x1a\n"


def fake_trial(trained_run, dest, lr, batch_size, objective):
    """A copy of a real run as if trained with (lr, batch_size) and scoring `objective`."""
    run = shutil.copytree(trained_run, dest, ignore=shutil.ignore_patterns("*.ckpt"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.update(lr=lr, batch_size=batch_size)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["objective"]["value"] = objective
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture
def sweep(trained_run, tmp_path):
    """A multirun folder: trials 0..3 of a 2x2 grid, and trial 4 that crashed."""
    root = tmp_path / "multirun"
    grid = [(0.001, 16, 0.30), (0.001, 32, 0.55), (0.01, 16, 0.45), (0.01, 32, 0.20)]
    for i, (lr, bs, obj) in enumerate(grid):
        fake_trial(trained_run, root / str(i), lr, bs, obj)
    crashed = root / "4"
    crashed.mkdir()
    shutil.copy(trained_run / "config.yaml", crashed / "config.yaml")
    return root


def test_table_sorted_by_objective_with_plots(sweep, capsys):
    assert main(["compare", str(sweep)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("4 runs, by val/acc (maximize)")
    header = lines[1].split()
    assert header[:6] == ["run", "model", "lr", "batch", "epochs", "objective"]
    assert "RMSE" in header and "test/acc" in header and "time" in header
    rows = [line.split() for line in lines[3:7]]
    assert [r[0] for r in rows] == ["1", "2", "0", "3"]
    assert [r[5] for r in rows] == ["0.5500", "0.4500", "0.3000", "0.2000"]
    assert rows[0][2:4] == ["0.001", "32"]
    assert f"crashed or still running (no metrics.json): {sweep / '4'}" in captured.err
    out = sweep / "compare"
    for name in ("objective_vs_lr.png", "learning_curves.png", "progress.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    md = (out / "compare.md").read_text()
    assert "| 1 | tf_efficientnet_lite0 |" in md and "crashed or still running" in md
    assert "data:image/png;base64," in (out / "compare.html").read_text()


def test_minimized_objective_sorts_ascending(trained_run, tmp_path):
    for i, obj in enumerate([0.9, 0.4, 0.7]):
        run = fake_trial(trained_run, tmp_path / "m" / str(i), 0.001 * (i + 1), 16, obj)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["objective"]["name"] = "val/rmse"
        (run / "metrics.json").write_text(json.dumps(metrics))
    runs = collect([tmp_path / "m"])
    assert runs.direction == "minimize"
    assert [r.path.name for r in runs.done] == ["1", "2", "0"]


def test_several_folders_name_runs_by_their_path(sweep, trained_run, tmp_path, capsys):
    single = fake_trial(trained_run, tmp_path / "single", 0.003, 64, 0.9)
    assert main(["compare", str(sweep), str(single), "-o", str(tmp_path / "cmp")]) == 0
    rows = capsys.readouterr().out.splitlines()[3:]
    assert rows[0].split()[0] == "single"
    assert rows[1].split()[0] == "multirun/1"


def test_folder_without_runs_is_said_and_others_listed(sweep, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    assert main(["compare", str(empty), str(sweep), "-o", str(tmp_path / "cmp")]) == 0
    captured = capsys.readouterr()
    assert f"no runs in {empty}" in captured.err
    assert captured.out.startswith("4 runs")


def test_nothing_to_compare_is_an_error(tmp_path, trained_run, capsys):
    (tmp_path / "only_crashed" / "0").mkdir(parents=True)
    shutil.copy(trained_run / "config.yaml", tmp_path / "only_crashed" / "0")
    with pytest.raises(BincountError, match="crashed or still running"):
        collect([tmp_path / "only_crashed"])
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
