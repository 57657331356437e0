"""Heads: every one gives a distribution over the counts; ordinal keeps them ordered; TTA is
flip-invariant; layer decay lowers the lr block by block."""

from __future__ import annotations

import functools

import pytest
import torch

from bincount.errors import BincountError
from bincount.models import heads
from bincount.models.module import CountModule
from bincount.models.network import CountNet

COUNTS = [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", heads.KINDS)
def test_every_head_gives_a_distribution_and_a_gradient(kind):
    head = heads.build(kind, COUNTS)
    raw = torch.randn(6, head.n_outputs, requires_grad=True)
    probs = head(raw).softmax(1)
    assert probs.shape == (6, 5)
    assert torch.allclose(probs.sum(1), torch.ones(6), atol=1e-5)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    head.loss(raw, y, smoothing=0.1).backward()
    assert raw.grad.abs().sum() > 0


def test_ordinal_head_can_answer_every_count_from_the_start():
    head = heads.OrdinalHead(COUNTS)
    raw = torch.linspace(-12, 12, 200).view(-1, 1)
    with torch.no_grad():
        assert set(head(raw).argmax(1).tolist()) == {0, 1, 2, 3, 4}


def test_ordinal_scores_move_the_count_in_order():
    head = heads.OrdinalHead(COUNTS)
    with torch.no_grad():
        head.gaps.copy_(torch.tensor([-3.0, 2.0, 0.1]))  # any values: thresholds still increase
    t = head.thresholds()
    assert (t[1:] > t[:-1]).all()
    raw = torch.linspace(-8, 8, 50).view(-1, 1)
    best = head(raw).argmax(1)
    assert best[0] == 0 and best[-1] == 4
    assert (best[1:] >= best[:-1]).all()  # a higher score never means fewer objects


def test_regress_head_picks_the_nearest_count():
    head = heads.RegressHead(COUNTS)
    raw = torch.tensor([[1.2], [2.6], [-3.0], [9.0]]) - head.center
    assert head(raw).argmax(1).tolist() == [0, 2, 0, 4]


def test_unknown_head_is_named():
    with pytest.raises(BincountError, match=r"head='boxes'.*classify, ordinal, regress"):
        heads.build("boxes", COUNTS)


@functools.cache
def small(layer_decay: float | None = None, **net) -> CountModule:
    torch.manual_seed(0)
    net = CountNet("tf_efficientnet_lite0", COUNTS, pretrained=False, **net)
    return CountModule(net, layer_decay=layer_decay).eval()


@pytest.mark.parametrize(
    ("kind", "tta"), [(k, "flips") for k in heads.KINDS] + [("ordinal", "dihedral")]
)
def test_tta_averages_the_symmetries(kind, tta):
    module = small(head=kind, tta=tta)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = module(x)
        flipped = module(x.flip(2))
        turned = module(x.rot90(1, (2, 3)))
        module.net.tta = False
        plain = module(x)
        module.net.tta = tta
    assert torch.allclose(out.softmax(1).sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out, flipped, atol=1e-4)  # the same views, the same answer
    assert torch.allclose(out, turned, atol=1e-4) == (tta == "dihedral")
    assert not torch.allclose(out, plain, atol=1e-4)


def test_unknown_tta_is_named():
    module = small(tta="sideways")
    with pytest.raises(BincountError, match=r"model\.net\.tta='sideways'"):
        module(torch.randn(1, 3, 32, 32))


def test_layer_decay_lowers_the_lr_down_the_backbone():
    module = small(layer_decay=0.8)
    module.optimizer_factory = functools.partial(torch.optim.AdamW, lr=0.01, weight_decay=0.05)
    module.scheduler_factory = None
    groups = module.configure_optimizers().param_groups
    assert groups[0]["name"] == "head" and groups[0]["lr"] == 0.01
    lrs = [g["lr"] for g in groups[1:]]
    assert max(lrs) <= 0.01 and min(lrs) < 0.01 * 0.8**10
    n = sum(len(g["params"]) for g in groups)
    assert n == len([p for p in module.parameters() if p.requires_grad])


def test_layer_decay_out_of_range_is_named(make_cfg):
    from bincount import validate  # the one check of the model's numbers

    with pytest.raises(BincountError, match=r"model\.layer_decay=1\.5 must be at most 1"):
        validate.check_train_config(make_cfg("model.layer_decay=1.5"))


def test_drop_path_rate_reaches_the_backbone():
    blocks = [m for m in small(drop_path_rate=0.2).net.net.modules() if hasattr(m, "drop_path")]
    rates = [b.drop_path.drop_prob for b in blocks if hasattr(b.drop_path, "drop_prob")]
    assert rates and max(rates) > 0.1  # timm scales it up to 0.2 over the depth
    plain = [m for m in small().net.net.modules() if hasattr(m, "drop_path")]
    assert not [b for b in plain if hasattr(b.drop_path, "drop_prob")]
