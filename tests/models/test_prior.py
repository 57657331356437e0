"""model.net.prior=uniform: the training split's count frequencies divided out of every answer,
recorded at fit time in the checkpoint and applied by evaluation, inference and export."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from runner import run_tiny

from bincount import export, inference
from bincount.data import transforms
from bincount.errors import BincountError
from bincount.inference import load_net
from bincount.models.module import CountModule
from bincount.models.network import CountNet

COUNTS = [1, 2, 3, 4, 5]
TRAIN = [10, 40, 80, 60, 10]


def divided(log_probs: torch.Tensor, train_counts: list[int]) -> torch.Tensor:
    """p(count | x) / freq(count), renormalised: the answer under a uniform prior."""
    freq = torch.tensor(train_counts, dtype=torch.float64) / sum(train_counts)
    p = log_probs.double().exp() / freq
    return p / p.sum(1, keepdim=True)


@pytest.mark.parametrize("kw", [{"head": "ordinal"}, {"tta": "flips"}])
def test_uniform_divides_the_training_frequencies_out(kw, tmp_path):
    torch.manual_seed(0)
    net = CountNet("resnet18", COUNTS, pretrained=False, prior="uniform", **kw)
    module = CountModule(net).eval()
    module.set_train_counts(TRAIN)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    net = load_net(ckpt)
    assert net.prior == "uniform" and net.train_counts == TRAIN
    assert set(net.state_dict()) == set(module.state_dict())  # no new checkpoint keys
    x = torch.randn(6, 3, 64, 64)
    with torch.inference_mode():
        adjusted = net(x)
        assert torch.equal(adjusted, module(x))
        net.prior = "train"
        plain = net(x)
    assert torch.allclose(adjusted.double().exp(), divided(plain, TRAIN), atol=1e-5)
    assert not torch.allclose(adjusted, plain, atol=1e-3)  # the rare counts gained
    rare = adjusted.exp()[:, [0, 4]].sum() > plain.exp()[:, [0, 4]].sum()
    assert rare


def test_train_prior_and_old_checkpoints_answer_unchanged(tmp_path):
    torch.manual_seed(0)
    module = CountModule(CountNet("resnet18", COUNTS, pretrained=False)).eval()
    # as CountModule's flat arguments of before issue 25, and before model.prior
    hparams = {k: v for k, v in module.hparams.items() if k != "net"}
    hparams.update(
        {k: v for k, v in module.net.config.items() if k not in ("prior", "train_counts")}
    )
    ckpt = tmp_path / "old.ckpt"  # a checkpoint from before model.net.prior
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, ckpt)
    net = load_net(ckpt)
    assert net.prior == "train"
    net.set_train_counts(TRAIN)  # known, but the train prior keeps them in the answers
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(net(x), module(x))


def test_a_count_without_training_photos_and_bad_values_are_clear():
    net = CountNet("resnet18", COUNTS, pretrained=False, prior="uniform")
    net.set_train_counts([0, 5, 5, 5, 5])  # counted as one photo: finite answers
    assert torch.isfinite(net.log_prior_shift).all()
    with pytest.raises(BincountError, match="one count of photos"):
        net.set_train_counts([1, 2, 3])  # (an unknown prior: bincount.validate's one check)


@pytest.fixture(scope="module")
def uniform_run(tiny_source, tmp_path_factory):
    """A tiny real run trained with model.net.prior=uniform (64 px, one short epoch)."""
    run, proc = run_tiny(
        tiny_source,
        tmp_path_factory.mktemp("uniform"),
        "data.image_size=64",
        "data.max_per_split=24",
        "model.net.head=ordinal",
        "model.net.prior=uniform",
    )
    return run, proc.stdout + proc.stderr + (run / "train.log").read_text()


def test_fit_records_the_training_counts_and_serving_and_onnx_apply_them(uniform_run, tiny_source):
    run, log = uniform_run
    sizes = re.search(r"\{'train': (\d+), 'val': (\d+)", log)
    assert sizes, log[-2000:]
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    train_counts = ckpt["hyper_parameters"]["net"]["train_counts"]
    assert len(train_counts) == 5 and sum(train_counts) == int(sizes.group(1))
    assert "frequencies" in log and "divided out" in log

    photos = sorted((tiny_source / "bin-images").glob("*.jpg"))[::9][:4]
    images = [transforms.open_rgb(p.read_bytes(), 64) for p in photos]
    model = inference.model_fn(run)
    served = inference.probabilities(model, images)
    net = load_net(run / "checkpoints" / "best.ckpt")
    assert net.train_counts == train_counts
    x = torch.stack([transforms.build(net.preprocess)(im) for im in images])
    with torch.inference_mode():
        adjusted = net(x)
        net.prior = "train"
        plain = net(x)
    assert np.abs(served - adjusted.exp().numpy()).max() < 1e-4
    assert torch.allclose(adjusted.double().exp(), divided(plain, train_counts), atol=1e-5)

    onnx = export.export_onnx(run)
    exported = inference.probabilities(inference.model_fn(onnx, backend="onnx"), images)
    assert np.abs(exported - served).max() < 1e-4
