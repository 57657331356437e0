"""`bincount evaluate` on the session's real trained run: its figures equal those computed by
hand from its own predictions, on the run's test split and on a bucket-layout folder; and the
inputs a user can get wrong."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from bincount.cli import main
from bincount.errors import BincountError
from bincount.reports.evaluate import evaluate, write

PNG = b"\x89PNG\r\n\x1a\n"


def by_hand(counts, truth, predicted) -> tuple[dict, list[list[int]]]:
    n = len(truth)
    pairs = list(zip(truth, predicted, strict=True))
    out = {
        "acc": sum(t == p for t, p in pairs) / n,
        "rmse": math.sqrt(sum((t - p) ** 2 for t, p in pairs) / n),
        "mae": sum(abs(t - p) for t, p in pairs) / n,
        "off_by_one": sum(abs(t - p) <= 1 for t, p in pairs) / n,
    }
    for c in counts:
        mine = [p for t, p in pairs if t == c]
        out[f"acc_count_{c}"] = sum(p == c for p in mine) / len(mine) if mine else 0.0
    confusion = [[sum(t == a and p == b for t, p in pairs) for b in counts] for a in counts]
    return out, confusion


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    """A copy of the session's trained run (evaluate writes into <run>/eval)."""
    return shutil.copytree(trained_run, tmp_path_factory.mktemp("eval") / "run")


def test_test_split_figures_match_hand_and_training(run, tmp_path):
    ev = evaluate(run, split="test")
    assert len(ev.paths) == len(ev.truth) == len(ev.predicted) > 0
    figs, confusion = by_hand(ev.counts, ev.truth, ev.predicted)
    for key, value in figs.items():
        assert ev.figures[key] == pytest.approx(value, abs=1e-6), key
    assert ev.confusion == confusion
    # the same checkpoint on the same split: what training's own test stage measured
    trained = json.loads((run / "metrics.json").read_text())
    assert ev.figures["acc"] == pytest.approx(trained["test"]["test/acc"], abs=1e-6)
    assert ev.confusion == trained["test_confusion"]

    files = write(ev, tmp_path / "out")
    assert {f.name for f in files} == {"metrics.json", "predictions.csv", "confusion.png"}
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["figures"] == ev.figures and saved["confusion"]["matrix"] == confusion
    assert saved["images"] == len(ev.paths)
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    header = "path,count,predicted,confidence," + ",".join(f"p_{c}" for c in ev.counts)
    assert rows[0] == header and len(rows) == len(ev.paths) + 1
    first = rows[1].split(",")
    assert sum(float(x) for x in first[4:]) == pytest.approx(1.0, abs=1e-3)
    assert (tmp_path / "out" / "confusion.png").read_bytes().startswith(PNG)


def test_tta_override_averages_flips(run):
    plain = evaluate(run, split="test", tta=False)
    flips = evaluate(run, split="test", tta=True)
    assert flips.paths == plain.paths and flips.truth == plain.truth
    assert flips.confidence != plain.confidence  # four views averaged, not the one
    assert all(0.2 <= c <= 1.0 for c in flips.confidence)


def test_prior_override_divides_the_runs_training_frequencies_out(run, capsys):
    from bincount.reports.evalset import split_items

    plain = evaluate(run, split="val")
    balanced = evaluate(run, split="val", prior="uniform")
    assert balanced.paths == plain.paths and balanced.prior == "uniform"
    train = [c for _, c in split_items(run, "train")]  # the run's own training split
    freq = [train.count(c) / len(train) for c in plain.counts]
    for p, b in zip(plain.probabilities, balanced.probabilities, strict=True):
        divided = [x / f for x, f in zip(p, freq, strict=True)]
        assert b == pytest.approx([x / sum(divided) for x in divided], abs=1e-4)
    assert main(["evaluate", str(run), "--split", "val", "--prior", "uniform"]) == 0
    saved = json.loads((run / "eval" / "run-val-prior-uniform" / "metrics.json").read_text())
    assert saved["prior"] == "uniform" and saved["figures"] == balanced.figures
    capsys.readouterr()


def test_cli_on_a_bucket_folder(run, tiny_source, capsys):
    out = run / "eval" / "tiny"
    assert (
        main(
            [
                "evaluate",
                str(run / "checkpoints" / "best.ckpt"),
                "--data",
                str(tiny_source),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "40 images" in printed and "acc=" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["images"] == 40 and saved["split"] == "all"
    truth = [
        int(line.split(",")[1]) for line in (out / "predictions.csv").read_text().splitlines()[1:]
    ]
    assert sorted(set(truth)) == [1, 2, 3, 4, 5] and all(truth.count(c) == 8 for c in range(1, 6))
    predicted = [
        int(line.split(",")[2]) for line in (out / "predictions.csv").read_text().splitlines()[1:]
    ]
    figs, confusion = by_hand(saved["counts"], truth, predicted)
    assert saved["confusion"]["matrix"] == confusion
    assert saved["figures"]["rmse"] == pytest.approx(figs["rmse"], abs=1e-6)


def test_another_format_says_what_was_expected(run, tmp_path, capsys):
    junk = tmp_path / "model.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BincountError, match="expected a checkpoint written by"):
        evaluate(junk)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    assert main(["evaluate", str(onnx)]) == 2
    err = capsys.readouterr().err
    assert "is a .onnx file; expected a checkpoint written by `python train.py`" in err
    assert "Traceback" not in err


def test_missing_paths_and_folders_without_checkpoint(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_an_ensemble_averages_its_members_probabilities(run):
    import torch

    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    one, two = evaluate(best, split="val", tta=False), evaluate(last, split="val", tta=True)
    both = evaluate([best, last], split="val", tta=None)
    assert both.members == [best, last] and both.paths == one.paths
    # best has no TTA and last was given flips above: the ensemble keeps each one's own
    # (None), so it is compared with the members each evaluated as trained
    mine = evaluate(last, split="val")
    expected = (torch.tensor(one.probabilities) + torch.tensor(mine.probabilities)) / 2
    assert torch.allclose(torch.tensor(both.probabilities), expected, atol=1e-5)
    assert both.predicted == [both.counts[i] for i in expected.argmax(1).tolist()]
    assert two.probabilities != mine.probabilities  # the tta override did reach the member


def test_ensemble_members_on_another_split_are_refused(run, tmp_path):
    other = shutil.copytree(run, tmp_path / "other")
    config = (other / "config.yaml").read_text()
    assert "  seed: 42\n" in config
    (other / "config.yaml").write_text(config.replace("  seed: 42\n", "  seed: 7\n"))
    with pytest.raises(BincountError, match=r"another split.*--data"):
        evaluate([run, other], split="test")


def test_cli_ensemble_writes_beside_the_first_run(run, capsys):
    assert (
        main(["evaluate", str(run), str(run / "checkpoints" / "last.ckpt"), "--split", "val"]) == 0
    )
    out = capsys.readouterr().out
    assert "ensemble of 2" in out
    saved = json.loads((run / "eval" / "ensemble-run-val" / "metrics.json").read_text())
    assert len(saved["members"]) == 2
