"""CountNet, the plain nn.Module that CountModule trains: a checkpoint's state_dict keys are
the net's, so inference loads it without Lightning and answers as the module does."""

from __future__ import annotations

import copy

import pytest
import torch

from bincount.inference import load_net
from bincount.models.module import CountModule
from bincount.models.network import CountNet

COUNTS = [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "kw", [{"tta": "flips"}, {"head": "ordinal", "tta": "dihedral", "aux_weight": 0.5}]
)
def test_a_modules_checkpoint_loads_into_the_net_and_answers_alike(kw, tmp_path):
    torch.manual_seed(0)
    module = CountModule("resnet18", COUNTS, image_size=64, pretrained=False, **kw).eval()
    net_keys = set(module.network.state_dict())
    assert net_keys == set(module.state_dict())  # today's keys: net.*, head.*, nothing else
    assert {k.split(".")[0] for k in net_keys} <= {"net", "head"}
    ckpt = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    net = load_net(ckpt)
    assert isinstance(net, CountNet) and not net.training
    assert net.preprocess == module.preprocess and net.counts == module.counts
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(net(x), module(x))


def test_the_module_trains_its_net_and_its_copies_share_the_parts():
    module = CountModule("resnet18", COUNTS, image_size=64, pretrained=False, tta="flips")
    assert module.network.head is module.head and module.network.net is module.net
    module.eval()
    assert not module.network.training
    module.train()
    assert module.network.training  # no test-time augmentation while training
    twin = copy.deepcopy(module)  # as weight averaging copies it
    assert twin.network.net is twin.net and twin.network.head is twin.head
