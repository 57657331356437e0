"""Checks of the numbers a user sets in `python train.py` overrides, before anything heavy
loads (torch, the data, the model): one line naming the key, the value and a fix.

Torch-free on purpose: train.py's Hydra main calls `check_train_config` before it imports
`bincount.train`, so `python train.py lr=abc` fails in about a second, not after the model
is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bincount.errors import BincountError

_MISSING = object()


@dataclass(frozen=True)
class Rule:
    """A number: whole or not, its bounds (open or closed), whether null is allowed."""

    whole: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    also: tuple = ()  # other values allowed (e.g. -1: no limit)
    hint: str = ""  # what to set instead ("a learning rate above 0, e.g. lr=0.001")

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.nullable else "is not set"
        if value in self.also and not isinstance(value, bool):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a whole number" if self.whole else "is not a number"
        if not math.isfinite(value):
            return "is not a finite number"
        if self.whole and value != int(value):
            return "is not a whole number"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'above' if self.low_open else 'at least'} {self.low:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'below' if self.high_open else 'at most'} {self.high:g}"
        return None


# key -> rule; the top-level knobs first, so an interpolated value is named as the user set it.
RULES: dict[str, Rule] = {
    "lr": Rule(low=0, low_open=True, hint="a learning rate above 0, e.g. lr=0.001"),
    "batch_size": Rule(whole=True, low=1, hint="a batch size of 1 or more, e.g. batch_size=32"),
    "seed": Rule(whole=True, low=0, hint="a whole number >= 0, e.g. seed=42"),
    "optimizer.lr": Rule(low=0, low_open=True, hint="a learning rate above 0, e.g. lr=0.001"),
    "optimizer.weight_decay": Rule(
        low=0, hint="a weight decay >= 0, e.g. optimizer.weight_decay=0.01"
    ),
    "optimizer.momentum": Rule(
        low=0, high=1, high_open=True, hint="a momentum in [0, 1), e.g. optimizer.momentum=0.9"
    ),
    "trainer.max_epochs": Rule(
        whole=True,
        low=1,
        also=(-1,),
        nullable=True,
        hint="1 or more epochs, e.g. trainer.max_epochs=6 (-1: no limit)",
    ),
    "trainer.max_steps": Rule(
        whole=True,
        low=1,
        also=(-1,),
        nullable=True,
        hint="1 or more steps, e.g. trainer.max_steps=1000 (-1 or null: no limit)",
    ),
    "trainer.log_every_n_steps": Rule(
        whole=True, low=1, hint="1 or more, e.g. trainer.log_every_n_steps=10"
    ),
    "trainer.gradient_clip_val": Rule(
        low=0,
        low_open=True,
        nullable=True,
        hint="a norm above 0, e.g. trainer.gradient_clip_val=1.0 (null: off)",
    ),
    "trainer.accumulate_grad_batches": Rule(
        whole=True, low=1, hint="1 or more batches, e.g. trainer.accumulate_grad_batches=2"
    ),
    "data.batch_size": Rule(
        whole=True, low=1, hint="a batch size of 1 or more, e.g. batch_size=32"
    ),
    # The backbones reduce an image 32 times: smaller images leave nothing to look at.
    "data.image_size": Rule(
        whole=True, low=32, high=2048, hint="32 to 2048 pixels, e.g. data.image_size=224"
    ),
    "data.num_workers": Rule(
        whole=True,
        low=0,
        nullable=True,
        hint="0 or more workers, e.g. data.num_workers=2 (null: up to 2)",
    ),
    "data.jitter": Rule(low=0, high=1, hint="a share in [0, 1], e.g. data.jitter=0.2 (0: none)"),
    "data.max_per_split": Rule(
        whole=True,
        low=1,
        nullable=True,
        hint="1 or more images, e.g. data.max_per_split=100 (null: all)",
    ),
    "data.train_fraction": Rule(
        low=0, low_open=True, high=1, hint="a share in (0, 1], e.g. data.train_fraction=0.5"
    ),
    "model.drop_rate": Rule(
        low=0, high=1, high_open=True, hint="a rate in [0, 1), e.g. model.drop_rate=0.2"
    ),
    "model.drop_path_rate": Rule(low=0, high=1, high_open=True, hint="a rate in [0, 1), e.g. 0.1"),
    "model.label_smoothing": Rule(
        low=0, high=1, high_open=True, hint="a share in [0, 1), e.g. 0.1"
    ),
    "model.backbone_lr_mult": Rule(
        low=0, hint="a multiplier >= 0, e.g. model.backbone_lr_mult=0.1"
    ),
    "model.aux_weight": Rule(
        low=0, nullable=True, hint="a weight >= 0, e.g. model.aux_weight=0.1 (0: off)"
    ),
}


def _value(cfg: DictConfig, key: str):
    try:
        return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    except OmegaConfBaseException as e:
        raise BincountError(f"{key} cannot be read ({e}): fix the override") from None


def check_train_config(cfg: DictConfig) -> None:
    """BincountError (one line) for the first user-facing number that is out of range."""
    for key, rule in RULES.items():
        value = _value(cfg, key)
        if value is _MISSING:
            continue
        problem = rule.problem(value)
        if problem is None:
            continue
        node = key.rsplit(".", 1)[-1]
        # optimizer.lr is ${lr}: name it as the user did when the values agree
        shown = node if _value(cfg, node) == value and node in RULES else key
        hint = f": set {rule.hint}" if rule.hint else ""
        raise BincountError(f"{shown}={value!r} {problem}{hint}")
