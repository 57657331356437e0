"""What one training epoch reads (bincount.data.sampling): every original and a fresh share of
the copies (data.copies_per_epoch), and a resolution by epoch (data.progressive), on real
photos through the real DataModule and a real Lightning Trainer."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from test_sources import add_photos, all_ids, squashed_copy

from bincount.data import sampling
from bincount.data.datamodule import BinDataModule
from bincount.errors import BincountError


@pytest.fixture
def two_sources(abid, tmp_path):
    ids = all_ids(abid)[::60]  # ~45 real photos over all counts
    original = add_photos(abid, tmp_path / "orig", ids[:20])
    copies = squashed_copy(abid, tmp_path / "copies", ids[20:])
    return original, copies, len(ids) - 20


def module(tmp_path, original, copies, **kw) -> BinDataModule:
    dm = BinDataModule(
        source=[str(original), {"path": str(copies), "original": False}],
        cache_dir=str(tmp_path / "cache"),
        image_size=64,
        batch_size=4,
        num_workers=0,
        **kw,
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_every_original_and_a_fresh_half_of_the_copies_each_epoch(two_sources, tmp_path):
    original, copies, n_copies = two_sources
    dm = module(tmp_path, original, copies, copies_per_epoch=0.5)
    ds = dm.datasets["train"]
    is_copy = [p.parent.parent == copies for p in ds.paths]
    originals = {i for i, c in enumerate(is_copy) if not c}
    assert sum(is_copy) == n_copies and originals  # copies train only, all of them
    sampler = dm.train_dataloader().sampler
    assert len(sampler) == len(originals) + round(0.5 * n_copies)
    epochs = [list(sampler) for _ in range(3)]
    for drawn in epochs:
        assert len(drawn) == len(set(drawn)) == len(sampler)  # each photo at most once
        assert originals <= set(drawn)
    picked = [frozenset(drawn) - originals for drawn in epochs]
    assert len(set(picked)) > 1  # another share of the copies each epoch
    again = module(tmp_path, original, copies, copies_per_epoch=0.5).train_dataloader().sampler
    assert [list(again) for _ in range(3)] == epochs  # the same draws from run to run
    # the default reads everything as before: a plain shuffle, no sampler of ours
    assert not isinstance(
        module(tmp_path, original, copies).train_dataloader().sampler, sampling.EpochSample
    )


def test_another_training_seed_draws_other_copies_on_the_same_split(two_sources, tmp_path):
    """`seed=N` reaches data.sample_seed, not data.seed: runs of several seeds are scored on the
    same validation and test photos (issue 26), each with its own draws of the copies."""
    original, copies, _ = two_sources
    a = module(tmp_path, original, copies, copies_per_epoch=0.5, sample_seed=7)
    b = module(tmp_path, original, copies, copies_per_epoch=0.5, sample_seed=8)
    for split in ("val", "test"):
        assert a.datasets[split].paths == b.datasets[split].paths
    draws_a = [list(a.train_dataloader().sampler) for _ in range(2)]
    draws_b = [list(b.train_dataloader().sampler) for _ in range(2)]
    assert draws_a != draws_b
    other_split = module(tmp_path, original, copies, copies_per_epoch=0.5, seed=43)
    assert other_split.datasets["test"].paths != a.datasets["test"].paths


def test_balanced_draws_of_an_epoch_share(two_sources, tmp_path):
    original, copies, _ = two_sources
    dm = module(tmp_path, original, copies, copies_per_epoch=0.5, balanced=True)
    sampler = dm.train_dataloader().sampler
    targets = dm.datasets["train"].targets
    drawn = [targets[i] for _ in range(40) for i in sampler]
    shares = torch.bincount(torch.tensor(drawn), minlength=5).float() / len(drawn)
    assert shares.min() > 0.12 and shares.max() < 0.28  # about 1/5 each


class Sizes(pl.LightningModule):
    """Records the size of every batch it trains and validates on."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 5)
        self.seen: dict[tuple[str, int], set[int]] = {}

    def _record(self, stage, x):
        self.seen.setdefault((stage, self.current_epoch), set()).add(x.shape[-1])
        return torch.nn.functional.cross_entropy(
            self.layer(x.mean((2, 3))), torch.zeros(len(x), dtype=torch.long)
        )

    def training_step(self, batch, _):
        return self._record("train", batch[0])

    def validation_step(self, batch, _):
        self._record("val", batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_progressive_resolution_trains_small_first_and_validates_at_full_size(
    two_sources, tmp_path
):
    original, copies, _ = two_sources
    dm = module(tmp_path, original, copies, progressive=[[2, 64], [0, 32]])
    net = Sizes()
    pl.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    ).fit(net, datamodule=dm)
    assert net.seen == {
        ("train", 0): {32},
        ("train", 1): {32},
        ("train", 2): {64},
        ("val", 0): {64},
        ("val", 1): {64},
        ("val", 2): {64},
    }


@pytest.mark.parametrize(
    "setting,words",
    [
        ([[1, 64]], "starting at epoch 0"),
        ([[0, 128]], "sizes up to data.image_size=64"),
        ("x", "pairs"),
    ],
)
def test_bad_settings_say_how_to_write_them(setting, words):
    with pytest.raises(BincountError, match=words):
        sampling.check_progressive(setting, 64)
    with pytest.raises(BincountError, match=r"copies_per_epoch=1\.5: use a share"):
        sampling.check_share(1.5)
