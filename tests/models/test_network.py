"""CountNet, the plain nn.Module that CountModule trains: a checkpoint's state_dict keys are
the net's, so inference loads it without Lightning and answers as the module does."""

from __future__ import annotations

import copy

import pytest
import torch

from bincount.errors import BincountError
from bincount.inference import load_net
from bincount.models.module import CountModule
from bincount.models.network import CountNet

COUNTS = [1, 2, 3, 4, 5]


PRE = {"resize": "letterbox", "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


def module_of(train: dict | None = None, **net) -> CountModule:
    """A CountModule over a small CountNet (the config's model.net node, as keywords)."""
    module = CountModule(CountNet("resnet18", COUNTS, pretrained=False, **net), **(train or {}))
    module.use_data(PRE, lambda split: [1] * len(COUNTS))
    return module


@pytest.mark.parametrize(
    ("net", "train"),
    [
        ({"tta": "flips"}, {}),
        ({"head": "ordinal", "tta": "dihedral", "aux": True}, {"aux_weight": 0.5}),
    ],
)
def test_a_modules_checkpoint_loads_into_the_net_and_answers_alike(net, train, tmp_path):
    torch.manual_seed(0)
    module = module_of(train, **net).eval()
    net_keys = set(module.net.state_dict())
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


def test_the_module_trains_its_net_and_its_copies_keep_the_keys():
    module = module_of(tta="flips")
    assert module.head is module.net.head
    module.eval()
    assert not module.net.training
    module.train()
    assert module.net.training  # no test-time augmentation while training
    twin = copy.deepcopy(module)  # as weight averaging copies it
    assert twin.head is twin.net.head and twin.net is not module.net
    assert list(twin.state_dict()) == list(module.state_dict()) == list(module.net.state_dict())
    twin.load_state_dict(module.state_dict())  # the keys map back onto the net


def test_the_net_records_its_settings_and_the_module_saves_them():
    module = module_of({"label_smoothing": 0.1}, head="ordinal", prior="uniform")
    assert module.hparams["net"]["head"] == "ordinal" and module.hparams["label_smoothing"] == 0.1
    assert module.hparams["net"] is module.net.config and module.hparams["preprocess"] == PRE
    module.set_train_counts([1, 2, 3, 4, 5])
    assert module.hparams["net"]["train_counts"] == [1, 2, 3, 4, 5]
    assert "net" not in module.net.config and "optimizer" not in module.hparams


def test_aux_weight_without_the_aux_outputs_is_refused():
    with pytest.raises(BincountError, match=r"model\.aux_weight=0\.5.*model\.net\.aux=true"):
        CountModule(CountNet("resnet18", COUNTS, pretrained=False), aux_weight=0.5)


def old_checkpoint(net: CountNet, preprocess: dict, **settings) -> dict:
    """A checkpoint as CountModule wrote it before issue 25 (pinned from a real run of that code):
    CountModule's flat arguments (the network's, the training's, `image_size` and `resize` also
    in `preprocess`) and the net's own state_dict keys (`net.*`, `head.*`)."""
    hparams = {
        "backbone": "resnet18",
        "counts": [1, 2, 3, 4, 5],
        "image_size": preprocess["image_size"],
        "pretrained": True,
        "weights": None,
        "drop_rate": 0.2,
        "drop_path_rate": 0.0,
        "freeze_backbone": False,
        "backbone_lr_mult": 1.0,
        "label_smoothing": 0.1,
        "channels_last": True,
        "head": "classify",
        "tta": False,
        "layer_decay": None,
        "aux_weight": 0.0,
        "resize": preprocess["resize"],
        "prior": "train",
        "train_counts": None,
        "preprocess": preprocess,
        **settings,
    }
    return {
        "epoch": 1,
        "global_step": 4,
        "pytorch-lightning_version": "2.6.6",
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
        "state_dict": net.state_dict(),
    }


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {
            "head": "ordinal",
            "tta": "flips",
            "aux_weight": 0.5,
            "prior": "uniform",
            "train_counts": [4, 22, 17, 14, 7],
        },
    ],
)
def test_a_checkpoint_of_before_the_net_node_loads_and_answers_alike(settings, tmp_path):
    torch.manual_seed(0)
    own = {k: v for k, v in settings.items() if k != "aux_weight"}
    net = CountNet("resnet18", COUNTS, pretrained=False, aux="aux_weight" in settings, **own)
    net.eval()
    pre = {"resize": "squash", "image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}
    ckpt = tmp_path / "old.ckpt"
    torch.save(old_checkpoint(net, pre, **settings), ckpt)
    loaded = load_net(ckpt)
    assert loaded.preprocess == pre and loaded.n_aux == net.n_aux
    assert loaded.config == net.config | {"pretrained": False}
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x).softmax(1), net(x).softmax(1))


def test_head_dropout_drops_the_heads_input_in_training_only():
    torch.manual_seed(0)
    net = CountNet("resnet18", COUNTS, pretrained=False, head_dropout=0.5, aux=True).train()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        out = net.outputs(x)
        assert (out[:, :5] == 0).any() and not (out[:, 5:] == 0).any()  # the aux outputs kept
        net.eval()
        assert torch.equal(net.outputs(x), net.outputs(x))
    assert net.config["head_dropout"] == 0.5  # what checkpoints keep
