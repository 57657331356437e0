"""`optimizer.lr_scaling`: how the learning rate follows the effective batch size.

`batch_size` is per process: on N GPUs (processes, over all hosts) a step averages the gradients
of N x batch_size images. A learning rate chosen on one GPU then is too small for the larger
batch; `lr_scaling` rescales it relative to `optimizer.reference_batch` (null: one process's
batch_size, i.e. the lr was chosen on one GPU):

    none    lr as configured (the default: a run on one GPU is unchanged)
    linear  lr x effective / reference           (Goyal et al. 2017, SGD with momentum)
    sqrt    lr x sqrt(effective / reference)      (often steadier for Adam/AdamW)

The two keys live in conf/optimizer/*.yaml beside the optimizer's own arguments; `split` takes
them out of the optimizer factory (torch's optimizers do not take them).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from bincount.errors import BincountError

MODES = ("none", "linear", "sqrt")
KEYS = ("lr_scaling", "reference_batch")


@dataclass(frozen=True)
class LrScaling:
    mode: str = "none"
    reference_batch: int | None = None

    def factor(self, batch_size: int, processes: int) -> float:
        """The lr multiplier for `processes` processes of `batch_size` images each."""
        if self.mode == "none":
            return 1.0
        effective = batch_size * processes
        ratio = effective / (self.reference_batch or batch_size)
        return ratio if self.mode == "linear" else math.sqrt(ratio)


def split(factory):
    """(the optimizer factory without the scaling keys, LrScaling) of a functools.partial."""
    if not isinstance(factory, functools.partial):
        return factory, LrScaling()
    keywords = dict(factory.keywords)
    mode = str(keywords.pop("lr_scaling", "none") or "none")
    reference = keywords.pop("reference_batch", None)
    if mode not in MODES:
        raise BincountError(f"optimizer.lr_scaling={mode}: use none, linear or sqrt")
    if reference is not None and int(reference) < 1:
        raise BincountError(f"optimizer.reference_batch={reference} must be at least 1 (or null)")
    cleaned = functools.partial(factory.func, *factory.args, **keywords)
    return cleaned, LrScaling(mode, int(reference) if reference is not None else None)
