"""An ensemble run (`runner=ensemble` with `runner.members`, as in experiment=ensemble): members
trained by train.py one after another, their probabilities averaged on val and test, finished
members reused."""

from __future__ import annotations

import json

import pytest
from runner import run_train

from bincount import inference
from bincount.errors import BincountError
from bincount.reports.evaluate import evaluate

MEMBERS = (
    "runner=ensemble",
    'runner.members={plain:["experiment=smoke"],ordinal:["experiment=smoke","model.net.head=ordinal"]}',
)


def ensemble_run(tiny_source, tmp_path, *extra):
    return run_train(
        *MEMBERS,
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "data.image_size=64",
        "data.num_workers=0",
        *extra,
    )


@pytest.mark.long
def test_ensemble_trains_members_and_scores_their_average(tiny_source, tmp_path):
    proc = ensemble_run(tiny_source, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["members"]) == {"plain", "ordinal"}
    for name in ("plain", "ordinal"):
        member = json.loads((run / "members" / name / "metrics.json").read_text())
        assert "test" not in member  # only the ensemble is scored on test
        # the command line's overrides reached every member
        config = (run / "members" / name / "config.yaml").read_text()
        assert "image_size: 64" in config
    assert "head: ordinal" in (run / "members" / "ordinal" / "config.yaml").read_text()
    # the ensemble's figures are those of the members' averaged probabilities
    mine = evaluate([run / "members" / n for n in ("plain", "ordinal")], split="test")
    assert metrics["test"]["test/acc"] == pytest.approx(mine.figures["acc"], abs=1e-6)
    assert metrics["test_confusion"] == mine.confusion
    assert metrics["objective"]["value"] == metrics["val"]["val/acc"]
    assert (run / "eval" / "ensemble-run-test" / "predictions.csv").is_file()
    assert "test/acc=" in proc.stdout
    # one model is served at a time: the ensemble's folder says which ones it has
    with pytest.raises(BincountError, match=r"ensemble run \(members: ordinal, plain\)"):
        inference.resolve(run)
    assert inference.resolve(run / "members" / "plain").name == "best.ckpt"

    # run again: finished members are reused, not retrained
    before = {
        n: (run / "members" / n / "metrics.json").stat().st_mtime_ns for n in metrics["members"]
    }
    again = ensemble_run(tiny_source, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing" in again.stderr + again.stdout
    after = {
        n: (run / "members" / n / "metrics.json").stat().st_mtime_ns for n in metrics["members"]
    }
    assert after == before
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]


@pytest.mark.parametrize(
    "members, words",
    [
        ("runner.members={only:[]}", "at least two members"),
        ('runner.members={a:["experiment=smoke"],b:"model.net.head=ordinal"}', "list of overrides"),
        ('runner.members={a:["experiment=smoke"],b:["model.net.head=boxes"]}', "member b failed"),
    ],
)
@pytest.mark.long
def test_bad_ensembles_are_clear_errors(tiny_source, tmp_path, members, words):
    proc = run_train(
        "runner=ensemble",
        members,
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "data.image_size=64",
        "data.num_workers=0",
    )
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
