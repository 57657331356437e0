"""What training reads: the splits it is refitted on (data.train_on) and how its images are
drawn (data.balanced), on real images."""

from __future__ import annotations

from collections import Counter

import pytest

from bincount.data.datamodule import BinDataModule
from bincount.data.manifest import SPLITS
from bincount.errors import BincountError


def datamodule(source, tmp_path, **kw) -> BinDataModule:
    dm = BinDataModule(str(source), str(tmp_path / "data"), batch_size=4, num_workers=0, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


def test_refit_trains_on_train_and_val_never_on_test(tiny_source, tmp_path):
    plain = datamodule(tiny_source, tmp_path)
    refit = datamodule(tiny_source, tmp_path, train_on=["train", "val"])
    ids = {s: set(plain.datasets[s].ids) for s in SPLITS}
    assert set(refit.datasets["train"].ids) == ids["train"] | ids["val"]
    assert not set(refit.datasets["train"].ids) & ids["test"]
    # val and test are still evaluated as before
    assert refit.datasets["val"].ids == plain.datasets["val"].ids
    assert refit.datasets["test"].ids == plain.datasets["test"].ids


@pytest.mark.parametrize("train_on", [["train", "test"], ["val"], ["trian"]])
def test_training_on_test_or_without_train_is_refused(tiny_source, tmp_path, train_on):
    with pytest.raises(BincountError, match=r"data.train_on=.*\[train,val\]"):
        BinDataModule(str(tiny_source), str(tmp_path / "data"), train_on=train_on)


def test_balanced_sampling_draws_every_count_about_equally(abid, tmp_path):
    # The real mirror is unbalanced (count 1 is the rarest): balanced draws even it out.
    dm = datamodule(abid, tmp_path, balanced=True, max_per_split=600)
    targets = dm.datasets["train"].targets
    natural = Counter(targets)
    assert max(natural.values()) > 2 * min(natural.values())
    loader = dm.train_dataloader()
    drawn = Counter(i for i in loader.sampler)
    assert sum(drawn.values()) == len(targets)
    per_count = Counter(targets[i] for i in drawn.elements())
    share = [per_count[k] / len(targets) for k in range(len(dm.counts))]
    assert all(0.14 < s < 0.26 for s in share), share
    # and unbalanced loaders keep plain shuffling
    assert datamodule(abid, tmp_path).train_dataloader().sampler.__class__.__name__ == (
        "RandomSampler"
    )


def test_a_train_fraction_keeps_that_share_of_each_count(tiny_source, tmp_path):
    full = datamodule(tiny_source, tmp_path)
    half = datamodule(tiny_source, tmp_path, train_fraction=0.5)
    assert set(half.datasets["train"].ids) < set(full.datasets["train"].ids)
    for k, n in enumerate(full.class_counts("train")):
        assert half.class_counts("train")[k] == max(1, round(n / 2))
    assert half.datasets["val"].ids == full.datasets["val"].ids
    again = datamodule(tiny_source, tmp_path / "again", train_fraction=0.5)
    assert again.datasets["train"].ids == half.datasets["train"].ids


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_a_train_fraction_outside_zero_one_is_refused(tiny_source, tmp_path, fraction):
    with pytest.raises(BincountError, match=r"train_fraction=.*\(0, 1\]"):
        BinDataModule(str(tiny_source), str(tmp_path / "data"), train_fraction=fraction)
