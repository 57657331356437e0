"""What one training epoch reads: a share of the copies per epoch, and a resolution by epoch.

`EpochSample` (`data.copies_per_epoch` < 1, or with `data.balanced`): each epoch draws every
original photo plus a fresh random share of the copies (photos of `{path: ..., original: false}`
sources), so an epoch costs less and every copy is still seen over the run; with `balanced`,
that epoch's photos are drawn with replacement, every count equally often. Its own generator,
seeded by `data.sample_seed` (the training seed), makes the draws the same from run to run.

`data.progressive: [[0, 160], [3, 224]]` trains epochs 0-2 at 160 px and from epoch 3 at 224 px
(`size_at`): the batch, already made square at `data.image_size`, is resized down on its way
to the model (antialiased bilinear), so decoding, the resized-image cache and validation (always
at `data.image_size`) are unchanged, and the network's cost per image falls with the square of
the size. The last stage should be `data.image_size`, the size the model is validated and
served at.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from bincount.errors import BincountError


class EpochSample(Sampler[int]):
    def __init__(
        self,
        copies: Sequence[bool],
        share: float,
        seed: int,
        targets: Sequence[int] | None = None,
        balanced: bool = False,
    ):
        share = check_share(share)
        self.originals = [i for i, c in enumerate(copies) if not c]
        self.copies = [i for i, c in enumerate(copies) if c]
        self.n_copies = round(share * len(self.copies))
        self.targets = list(targets) if targets is not None else None
        if balanced and self.targets is None:
            raise ValueError("balanced sampling needs the targets")
        self.balanced = balanced
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.originals) + self.n_copies

    def __iter__(self) -> Iterator[int]:
        g = self.generator
        pick = torch.randperm(len(self.copies), generator=g)[: self.n_copies].tolist()
        chosen = self.originals + [self.copies[i] for i in pick]
        if not self.balanced:
            yield from (chosen[i] for i in torch.randperm(len(chosen), generator=g).tolist())
            return
        labels = [self.targets[i] for i in chosen]
        per = {t: labels.count(t) for t in set(labels)}
        weights = torch.tensor([1.0 / per[t] for t in labels], dtype=torch.double)
        draws = torch.multinomial(weights, len(chosen), replacement=True, generator=g)
        yield from (chosen[i] for i in draws.tolist())


def check_share(share) -> float:
    """`data.copies_per_epoch` as a float in [0, 1]."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value <= 1:
        raise BincountError(
            f"data.copies_per_epoch={share}: use a share of the copies in [0, 1], e.g. 0.5 "
            "(every original photo, half of the copies each epoch)"
        )
    return value


def check_progressive(schedule, image_size: int) -> list[tuple[int, int]] | None:
    """[(first epoch, size)] sorted by epoch, from `data.progressive` (None: off)."""
    if not schedule:
        return None
    hint = (
        "data.progressive is a list of [first epoch, size] pairs starting at epoch 0, sizes up "
        f"to data.image_size={image_size}, e.g. data.progressive=[[0,160],[3,{image_size}]]"
    )
    try:
        stages = sorted((int(e), int(s)) for e, s in schedule)
    except (TypeError, ValueError):
        raise BincountError(f"data.progressive={schedule!r}: {hint}") from None
    if stages[0][0] != 0 or any(s < 32 or s > image_size for _, s in stages):
        raise BincountError(f"data.progressive={schedule!r}: {hint}")
    return stages


def size_at(stages: list[tuple[int, int]], epoch: int) -> int:
    """The training size of `epoch` under the stages of `check_progressive`."""
    return [s for e, s in stages if e <= epoch][-1]


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch (N, C, H, W) of square images resized to size x size (antialiased bilinear)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
