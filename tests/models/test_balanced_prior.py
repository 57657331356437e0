"""model.net.prior=balanced: a per-count shift fitted on the validation split after training
(bincount.models.shift), written into the kept checkpoint, used by the test stage and by every
later answer; `bincount evaluate --prior balanced` fits it for a run trained without."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from omegaconf import OmegaConf
from runner import run_small, run_train

from bincount.cli import main
from bincount.errors import BincountError
from bincount.inference import load_net
from bincount.models import shift
from bincount.models.module import CountModule
from bincount.models.network import CountNet
from bincount.reports.evalset import split_items
from bincount.reports.evaluate import evaluate

COUNTS = [1, 2, 3, 4, 5]


def crowded(n_per_count: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of a model that leans towards the middle counts (as the ordinal head
    does): right about half the time, else one count nearer 3."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(5).repeat_interleave(n_per_count)
    logits = torch.randn(len(targets), 5, generator=g) * 0.5
    logits[torch.arange(len(targets)), targets] += 1.0
    logits += torch.tensor([-1.0, 0.3, 0.8, 0.3, -1.0])  # the middle favoured
    return logits.log_softmax(1), targets


def macro(log_probs: torch.Tensor, targets: torch.Tensor) -> float:
    pred = log_probs.argmax(1)
    return sum(float((pred[targets == k] == k).float().mean()) for k in range(5)) / 5


def test_the_fitted_shift_lifts_the_edges_and_macro_accuracy():
    z, t = crowded()
    full = shift.fit(z, t, strength=1.0)
    half = shift.fit(z, t)  # the default strength: half of it
    assert shift.STRENGTH == 0.5
    assert half == pytest.approx([x / 2 for x in full], abs=1e-5)
    assert sum(full) == pytest.approx(0.0, abs=1e-6)
    assert full[0] > 0.5 and full[4] > 0.5 and full[2] < 0  # up on 1 and 5, down on 3
    assert macro(z + torch.tensor(half), t) > macro(z, t) + 0.05


def test_a_count_without_validation_photos_keeps_no_shift_and_bad_input_is_clear():
    z, t = crowded()
    keep = t != 4  # no photo of count 5
    fitted = shift.fit(z[keep], t[keep])
    assert fitted[4] == 0.0 and all(abs(x) < 5 for x in fitted)
    with pytest.raises(BincountError, match="needs validation photos"):
        shift.fit(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))


def test_the_shift_is_kept_in_the_checkpoint_and_added_after_the_uniform_prior(tmp_path):
    torch.manual_seed(0)
    net = CountNet("resnet18", COUNTS, pretrained=False, prior="balanced")
    module = CountModule(net).eval()
    module.set_train_counts([10, 40, 80, 60, 10])
    net.set_val_shift([0.4, -0.2, -0.4, -0.2, 0.4])
    ckpt = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    loaded = load_net(ckpt)
    assert loaded.prior == "balanced" and loaded.val_shift == [0.4, -0.2, -0.4, -0.2, 0.4]
    assert set(loaded.state_dict()) == set(module.state_dict())  # no new checkpoint keys
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        balanced = loaded(x)
        loaded.prior = "uniform"
        uniform = loaded(x)
    expected = (uniform + torch.tensor([0.4, -0.2, -0.4, -0.2, 0.4])).log_softmax(1)
    assert torch.allclose(balanced, expected, atol=1e-5)
    with pytest.raises(BincountError, match="one number per count"):
        net.set_val_shift([0.1, 0.2])


@pytest.fixture(scope="module")
def balanced_run(tiny_source, tmp_path_factory):
    """A small real run trained with model.net.prior=balanced (96 px, 2 epochs, test stage)."""
    run, proc = run_small(
        tiny_source,
        tmp_path_factory.mktemp("balanced"),
        "model.net.head=ordinal",
        "model.net.prior=balanced",
    )
    return run, proc.stdout + proc.stderr + (run / "train.log").read_text()


def test_training_fits_the_shift_on_validation_and_tests_and_serves_with_it(balanced_run):
    run, log = balanced_run
    metrics = json.loads((run / "metrics.json").read_text())
    blob = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    fitted = blob["hyper_parameters"]["net"]["val_shift"]
    assert fitted == metrics["val_shift"] and len(fitted) == 5
    assert any(abs(x) > 1e-4 for x in fitted)
    n_val = len(split_items(run, "val"))
    said = rf"shift \[.*\] \(counts \[1, 2, 3, 4, 5\]\) fitted on {n_val} validation photos"
    assert re.search(said, log)
    # every later answer uses it: evaluate on the test split gives what the test stage measured
    ev = evaluate(run, split="test")
    assert ev.figures["acc"] == pytest.approx(metrics["test"]["test/acc"], abs=1e-6)
    assert ev.confusion == metrics["test_confusion"]
    # and the fit is the same one evaluate makes from the run's validation split
    net = load_net(run / "checkpoints" / "best.ckpt")
    net.set_val_shift(None)
    from bincount.reports.evaluate import fit_val_shift

    assert fit_val_shift(net, run / "checkpoints" / "best.ckpt") == pytest.approx(fitted, abs=1e-4)


def test_evaluate_fits_a_balanced_prior_for_a_run_trained_without(trained_run, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    uniform = evaluate(run, split="test", prior="uniform")
    balanced = evaluate(run, split="test", prior="balanced")
    assert balanced.paths == uniform.paths and balanced.prior == "balanced"
    net = load_net(run / "checkpoints" / "best.ckpt")
    from bincount.reports.evaluate import fit_val_shift, set_prior

    set_prior(net, run / "checkpoints" / "best.ckpt", "uniform")
    net.prior = "balanced"
    b = torch.tensor(fit_val_shift(net, run / "checkpoints" / "best.ckpt"))
    for u, p in zip(uniform.probabilities, balanced.probabilities, strict=True):
        expected = (torch.tensor(u).log() + b).softmax(0)
        assert torch.allclose(torch.tensor(p), expected, atol=1e-3)
    assert main(["evaluate", str(run), "--split", "test", "--prior", "balanced"]) == 0
    saved = json.loads((run / "eval" / "run-test-prior-balanced" / "metrics.json").read_text())
    assert saved["prior"] == "balanced" and saved["figures"] == balanced.figures
    capsys.readouterr()


def test_a_balanced_prior_is_refused_where_the_validation_split_is_trained_on(
    trained_run, tmp_path, capsys
):
    """data.train_on=[train,val] would fit the shift on training photos: refused before training,
    and by evaluate --prior balanced for a run trained so, each in one line naming the fix."""
    proc = run_train(
        "model.net.prior=balanced",
        "data.train_on=[train,val]",
        f"hydra.run.dir={tmp_path / 'refit'}",
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "data.train_on=[train,val] trains on it" in lines[0]
    assert "model.net.prior=uniform" in lines[0]
    assert not (tmp_path / "refit" / "config.yaml").exists()

    run = shutil.copytree(trained_run, tmp_path / "run")
    config = run / "config.yaml"
    cfg = OmegaConf.load(config)
    cfg.data.train_on = ["train", "val"]
    OmegaConf.save(cfg, config)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test", "--prior", "balanced"]) == 2
    err = capsys.readouterr().err
    assert "trained on its validation split (data.train_on=[train,val])" in err
    assert "--prior uniform" in err
    assert not (run / "eval" / "run-test-prior-balanced").exists()
