"""Pretrained weights: the offline mapping is right, and missing weights fail at once, clearly."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image

from bincount import preprocess
from bincount.data import transforms
from bincount.errors import BincountError
from bincount.models import backbones

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


# timm name -> (native resolution, tensors in the shipped state dict)
OFFLINE = {
    "tf_efficientnet_lite0": (224, 296),
    "tf_efficientnet_lite1": (240, 386),
    "tf_efficientnet_lite2": (260, 386),
}


def imagenet_model(name: str) -> torch.nn.Module:
    """The backbone with its 1000-class ImageNet head, from the offline weights: what the
    shipped mapping must get right, classifier included."""
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(backbones.map_in_order(backbones.OFFLINE_WEIGHTS[name](), model))
    return model.eval()


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_weights_recognise_a_cat(name):
    skimage_data = pytest.importorskip("skimage.data")
    model = imagenet_model(name)
    size = OFFLINE[name][0]
    assert model.pretrained_cfg["input_size"] == (3, size, size)
    mean, std = backbones.normalization(model)
    assert mean == std == [0.5, 0.5, 0.5]
    tf = transforms.build(preprocess.spec(size, mean, std))
    x = tf(Image.fromarray(skimage_data.chelsea())).unsqueeze(0)
    with torch.no_grad():
        top = model(x).softmax(1)[0].topk(3)
    assert top.indices[0].item() in CAT_CLASSES, top
    assert top.values[0].item() > 0.3


@pytest.mark.parametrize("name", OFFLINE)
def test_every_tensor_maps_in_order(name):
    source = backbones.OFFLINE_WEIGHTS[name]()
    model = timm.create_model(name, pretrained=False)
    mapped = backbones.map_in_order(source, model)
    assert len(mapped) == len(source) == OFFLINE[name][1]
    for (_, a), (_, b) in zip(source.items(), mapped.items(), strict=True):
        assert a is b


def test_weights_of_another_width_are_refused():
    # Lite1 and Lite2 have the same 386 tensors; only the shapes tell them apart.
    source = backbones.OFFLINE_WEIGHTS["tf_efficientnet_lite2"]()
    model = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    with pytest.raises(BincountError, match="does not fit"):
        backbones.map_in_order(source, model)


@pytest.mark.parametrize("name", OFFLINE)
def test_fine_tuning_backbone_starts_from_the_pretrained_body(name):
    pretrained = backbones.create_backbone(name, 5, pretrained=True)
    imagenet = imagenet_model(name)
    assert torch.equal(pretrained.conv_stem.weight, imagenet.conv_stem.weight)
    assert pretrained.get_classifier().out_features == 5


def test_hub_backbone_offline_fails_at_once_naming_the_ways_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BincountError) as e:
        backbones.create_backbone("resnet50", 5, pretrained=True)
    msg = str(e.value)
    for words in (
        "resnet50",
        "model.net.pretrained=false",
        "model.net.weights=PATH",
        "efficientnet_lite0",
    ):
        assert words in msg


def test_random_weights_only_when_asked():
    model = backbones.create_backbone("resnet18", 5, pretrained=False)
    assert model.get_classifier().out_features == 5


def test_unknown_backbone_suggests_names():
    with pytest.raises(BincountError, match=r"unknown backbone 'resnet5O'.*did you mean.*resnet50"):
        backbones.create_backbone("resnet5O", 5)


def test_local_weights_file(tmp_path):
    source = imagenet_model("tf_efficientnet_lite0")
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    model = backbones.create_backbone("tf_efficientnet_lite0", 3, weights=str(path))
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
    with pytest.raises(BincountError, match="no such file"):
        backbones.create_backbone("tf_efficientnet_lite0", 3, weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(BincountError, match="not a PyTorch weights file"):
        backbones.create_backbone("tf_efficientnet_lite0", 3, weights=str(tmp_path / "junk.pth"))
    with pytest.raises(BincountError, match="do not fit"):
        backbones.create_backbone("resnet18", 3, weights=str(path))
