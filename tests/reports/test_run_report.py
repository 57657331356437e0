"""`bincount report RUN` on a real tiny run trained with debug=[health,profile]; on the same
run without the debug files; with a rule that fired; and the errors a user can cause."""

from __future__ import annotations

import json
import shutil

import pytest

from bincount.cli import main
from bincount.errors import BincountError
from bincount.reports.run_report import load_run, recommendations, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(debug_run, tmp_path):
    """A copy of the session's debug run (the tests write reports into it)."""
    return shutil.copytree(debug_run, tmp_path / "run")


def test_html_report_has_every_section_with_pictures(run, capsys):
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    page = (run / "report.html").read_text()
    for section in (
        "Top recommendations",
        "Health rules",
        "Learning curves",
        "Gradient norms per layer",
        "Where the time goes",
        "Lightning SimpleProfiler",
    ):
        assert section in page, section
    assert page.count('src="data:image/png;base64,') == 3
    assert page.count("<tr class=ok>") == 4  # the four rules a 5-step run can judge
    assert "tf_efficientnet_lite0" in page
    assert "run with `debug" not in page  # nothing missing


def test_markdown_report_writes_the_pictures_beside_it(run):
    path = write_report(run, fmt="md")
    assert path == run / "report.md"
    text = path.read_text()
    for name in ("learning_curves", "grad_norms", "time_split"):
        png = run / "report_files" / f"{name}.png"
        assert png.read_bytes().startswith(PNG)
        assert f"](report_files/{name}.png)" in text
    assert "| non_finite | ok |" in text
    assert "| phase | share of step | mean ms |" in text


def test_a_run_without_debug_files_says_how_to_get_them(run, tmp_path):
    for name in ("health.json", "grad_norms.csv", "profile.json"):
        (run / name).unlink()
    out = write_report(run, out=tmp_path / "plain.html")
    page = out.read_text()
    assert "No health.json: run with `debug=health`" in page
    assert "run with `debug=profile`" in page
    assert page.count('src="data:image/png;base64,') == 1  # the learning curves only


def test_fired_rules_lead_the_recommendations_with_their_fix(run):
    health = json.loads((run / "health.json").read_text())
    rule = health["rules"]["overfitting"]
    rule["status"] = "fired"
    rule["fired"] = {
        "step": 40,
        "epoch": 9,
        "message": "val loss 1.2 -> 1.5 since epoch 4",
        "evidence": {},
        "times": 3,
        "last_step": 50,
    }
    health["fired"] = ["overfitting"]
    (run / "health.json").write_text(json.dumps(health))
    recs = recommendations(load_run(run))
    assert recs[0].startswith("overfitting (step 40): val loss 1.2 -> 1.5 since epoch 4. Fix: ")
    page = write_report(run).read_text()
    assert "<tr class=fired><td>overfitting</td><td>FIRED</td><td>step 40, epoch 9</td>" in page


def test_errors_name_the_problem_and_the_fix(tmp_path, capsys):
    with pytest.raises(BincountError, match=r"no run folder at .*nope: pass a run's folder"):
        load_run(tmp_path / "nope")
    with pytest.raises(BincountError, match="is not a run folder"):
        load_run(tmp_path)
    (tmp_path / "health.json").write_text("{not json")
    with pytest.raises(BincountError, match=r"health.json is not valid JSON"):
        load_run(tmp_path)
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: no run folder at")
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path), "--format", "pdf"])
