"""model.frozen_stages=N: the stem and the first N stages of the backbone keep their pretrained
weights; no gradient reaches them, the optimiser never holds them, and the rest trains."""

from __future__ import annotations

import functools

import pytest
import torch
from runner import run_tiny

from bincount.errors import BincountError
from bincount.models import backbones
from bincount.models.module import CountModule
from bincount.models.network import CountNet

COUNTS = [1, 2, 3, 4, 5]


def lite0_module(**train) -> CountModule:
    net = CountNet("tf_efficientnet_lite0", COUNTS, pretrained=False, head="ordinal")
    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
    return CountModule(net, optimizer=optimizer, scheduler=None, **train)


def groups_of(module: CountModule) -> dict[str, bool]:
    """Each top-level part of the backbone (conv_stem, blocks.0, ...) -> does any of its
    parameters train."""
    parts: dict[str, bool] = {}
    for name, p in module.net.net.named_parameters():
        part = ".".join(name.split(".")[:2]) if name.startswith("blocks.") else name.split(".")[0]
        parts[part] = parts.get(part, False) or p.requires_grad
    return parts


def test_two_frozen_stages_get_no_gradient_and_the_optimiser_never_holds_them():
    torch.manual_seed(0)
    module = lite0_module(frozen_stages=2)
    parts = groups_of(module)
    assert [k for k, trains in parts.items() if not trains] == [
        "conv_stem",
        "bn1",
        "blocks.0",
        "blocks.1",
    ]
    assert all(parts[f"blocks.{i}"] for i in range(2, 7)) and parts["conv_head"]
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 3, 4])
    module.head.loss(module.raw(x), y, 0.1).backward()
    named = dict(module.net.net.named_parameters())
    assert (
        named["conv_stem.weight"].grad is None and named["blocks.1.0.conv_pw.weight"].grad is None
    )
    assert named["blocks.2.0.conv_pw.weight"].grad.abs().sum() > 0
    held = {id(p) for g in module.configure_optimizers().param_groups for p in g["params"]}
    frozen = backbones.early_parameters(module.net.net, 2)
    assert frozen and not held & {id(p) for p in frozen}
    assert held == {id(p) for p in module.parameters() if p.requires_grad}


def test_zero_frozen_stages_trains_everything():
    module = lite0_module(frozen_stages=0)
    assert all(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("stages", [8, 12])
def test_freezing_every_stage_is_a_clear_error_naming_the_range(stages):
    with pytest.raises(
        BincountError, match=r"model.frozen_stages=\d+ leaves nothing .* use 0 to 7"
    ):
        lite0_module(frozen_stages=stages)


def test_a_real_run_keeps_the_pretrained_stem_and_trains_the_rest(tiny_source, tmp_path):
    run, _ = run_tiny(tiny_source, tmp_path, "model.frozen_stages=2")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    trained = ckpt["state_dict"]
    pretrained = CountNet("tf_efficientnet_lite0", COUNTS).net.state_dict()
    for key in ("conv_stem.weight", "blocks.0.0.conv_dw.weight", "blocks.1.1.conv_pwl.weight"):
        assert torch.equal(trained[f"net.{key}"], pretrained[key]), key
    for key in ("blocks.2.0.conv_pw.weight", "blocks.6.0.conv_pw.weight", "conv_head.weight"):
        assert not torch.equal(trained[f"net.{key}"], pretrained[key]), key
    assert ckpt["hyper_parameters"]["frozen_stages"] == 2
