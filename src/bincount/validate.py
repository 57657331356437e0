"""Checks of what a user sets in `python train.py` overrides, before anything heavy loads
(torch, the data, the model): one line naming the key, the value and a fix.

Every numeric key of the configs has a `Rule` (its bounds), every enum-like key (a string or a
switch with a few values) a `Choice`, keyed by a pattern (`*` is one level:
`callbacks.health.rules.*.patience`); tests/test_validate.py walks the composed config of every
group option and fails on a numeric or enum key without one. Then the checks across keys:
`data.counts`, `data.split` (a validation split must remain), a training without end under a
scheduler that needs its length, and `ckpt_path` (a complete checkpoint file).

Torch-free on purpose: train.py's Hydra main calls `check_train_config` before it imports
`bincount.training.runner`, so `python train.py lr=abc` fails in about a second, not after the model
is built.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatchcase

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bincount.errors import BincountError
from bincount.preprocess import RESIZES

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
    indices: bool = False  # also a list of whole numbers >= 0, or "0,1" (trainer.devices)

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.nullable else "is not set"
        if self.indices and _indices(value):
            return None
        if any(value == a and type(value) is type(a) for a in self.also):  # True is not 1
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a whole number" if self.whole else "is not a number"
        if not math.isfinite(value):
            return "is not a finite number"
        if self.whole and not isinstance(value, int):  # 1e9 is a float: Lightning asserts
            return "is not a whole number (write it without a point or an exponent)"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'above' if self.low_open else 'at least'} {self.low:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'below' if self.high_open else 'at most'} {self.high:g}"
        return None


def _indices(value) -> bool:
    """A list of device indices: [0, 1] or "0,1"."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        return bool(parts) and all(p.isdigit() for p in parts) and "," in value
    if isinstance(value, ListConfig | list):
        return bool(len(value)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        )
    return False


@dataclass(frozen=True)
class Choice:
    """One of a few values (strings, or true/false)."""

    values: tuple
    nullable: bool = False
    hint: str = ""

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.nullable else "is not set"
        if any(value == v and type(value) is type(v) for v in self.values):
            return None
        shown = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in self.values)
        return f"is not one of {shown}"


def _bool(hint: str, nullable: bool = False) -> Choice:
    return Choice((True, False), nullable=nullable, hint=hint)


_EPOCHS = "1 to 100000 epochs, e.g. trainer.max_epochs=6 (-1: no limit)"
_PATIENCE = "a whole number of checks >= 1, e.g. 3"

# pattern -> rule; the top-level knobs first, so an interpolated value is named as the user set
# it. `*` stands for one level of keys.
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
    "scheduler.pct_start": Rule(
        low=0, high=1, low_open=True, high_open=True, hint="a share in (0, 1), e.g. 0.15"
    ),
    "scheduler.warmup_pct": Rule(
        low=0, high=1, high_open=True, hint="a share in [0, 1), e.g. 0.05"
    ),
    "scheduler.min_factor": Rule(low=0, high=1, hint="a factor in [0, 1], e.g. 0.01"),
    "trainer.max_epochs": Rule(
        whole=True, low=1, high=100000, also=(-1,), nullable=True, hint=_EPOCHS
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
    "trainer.num_nodes": Rule(whole=True, low=1, hint="1 or more machines, e.g. 1"),
    "trainer.devices": Rule(
        whole=True,
        low=1,
        also=(-1, "auto"),
        indices=True,
        hint="1 or more devices, -1 (all), auto, or their indices, e.g. [0,1]",
    ),
    "trainer.num_sanity_val_steps": Rule(
        whole=True, low=0, also=(-1,), hint="0 or more batches, e.g. 0 (-1: all)"
    ),
    "trainer.limit_*_batches": Rule(
        low=0, nullable=True, hint="a share in [0, 1] or a whole number of batches, e.g. 2"
    ),
    "trainer.fast_dev_run": Rule(
        whole=True, low=1, also=(True, False), hint="true, false or a number of batches, e.g. 2"
    ),
    "trainer.overfit_batches": Rule(low=0, hint="a share in [0, 1] or a number of batches, e.g. 4"),
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
    "data.max_bad_images": Rule(
        whole=True,
        low=0,
        nullable=True,
        hint="0 or more photos, e.g. data.max_bad_images=10 (null: no limit)",
    ),
    "data.copies_per_epoch": Rule(
        low=0, high=1, hint="a share of the copies in [0, 1], e.g. data.copies_per_epoch=0.5"
    ),
    "callbacks.smooth.decay": Rule(
        low=0,
        high=1,
        high_open=True,
        hint="a decay in [0, 1), e.g. callbacks.smooth.decay=0.5 (the last epoch weighs 1/2, the "
        "one before 1/4, ...)",
    ),
    "callbacks.swa.start": Rule(
        low=0,
        hint="a share of trainer.max_epochs in [0, 1) or an epoch, e.g. 0.5 (second half) or 3 "
        "(from the fourth epoch)",
    ),
    "data.train_fraction": Rule(
        low=0, low_open=True, high=1, hint="a share in (0, 1], e.g. data.train_fraction=0.5"
    ),
    "data.seed": Rule(whole=True, low=0, hint="a whole number >= 0, e.g. data.seed=42"),
    "data.sample_seed": Rule(whole=True, low=0, hint="a whole number >= 0, e.g. seed=42"),
    "model.net.drop_rate": Rule(
        low=0, high=1, high_open=True, hint="a rate in [0, 1), e.g. model.net.drop_rate=0.2"
    ),
    "model.net.drop_path_rate": Rule(
        low=0, high=1, high_open=True, hint="a rate in [0, 1), e.g. 0.1"
    ),
    "model.net.head_dropout": Rule(
        low=0, high=1, high_open=True, hint="a rate in [0, 1), e.g. 0.1"
    ),
    "model.label_smoothing": Rule(
        low=0, high=1, high_open=True, hint="a share in [0, 1), e.g. 0.1"
    ),
    "model.frozen_stages": Rule(
        whole=True, low=0, hint="0 or more stages, e.g. model.frozen_stages=2 (0: off)"
    ),
    "model.backbone_lr_mult": Rule(
        low=0, hint="a multiplier >= 0, e.g. model.backbone_lr_mult=0.1"
    ),
    "model.aux_weight": Rule(
        low=0, nullable=True, hint="a weight >= 0, e.g. model.aux_weight=0.1 (0: off)"
    ),
    "model.layer_decay": Rule(
        low=0, high=1, low_open=True, nullable=True, hint="a factor in (0, 1], e.g. 0.8 (null: off)"
    ),
    "model.optimizer.lr": Rule(low=0, low_open=True, hint="a learning rate above 0, e.g. 0.001"),
    "model.optimizer.weight_decay": Rule(low=0, hint="a weight decay >= 0, e.g. 0.01"),
    "model.optimizer.momentum": Rule(low=0, high=1, high_open=True, hint="a momentum in [0, 1)"),
    "model.scheduler.pct_start": Rule(
        low=0, high=1, low_open=True, high_open=True, hint="a share in (0, 1), e.g. 0.15"
    ),
    "model.scheduler.warmup_pct": Rule(low=0, high=1, high_open=True, hint="a share in [0, 1)"),
    "model.scheduler.min_factor": Rule(low=0, high=1, hint="a factor in [0, 1], e.g. 0.01"),
    "callbacks.ema.decay": Rule(
        low=0, high=1, low_open=True, high_open=True, hint="a decay in (0, 1), e.g. 0.98"
    ),
    "callbacks.model_checkpoint.save_top_k": Rule(
        whole=True, low=0, also=(-1,), hint="0 or more checkpoints, e.g. 1 (-1: all)"
    ),
    "callbacks.profile.skip_first_steps": Rule(whole=True, low=0, hint="0 or more steps, e.g. 2"),
    "callbacks.profile.memory_every_n_steps": Rule(whole=True, low=1, hint="1 or more, e.g. 5"),
    "callbacks.health.every_n_steps": Rule(whole=True, low=1, hint="1 or more steps, e.g. 1"),
    "callbacks.health.rules.*.patience": Rule(whole=True, low=1, hint=_PATIENCE),
    "callbacks.health.rules.*.every_n_steps": Rule(whole=True, low=1, hint="1 or more, e.g. 10"),
    "callbacks.health.rules.*.window": Rule(whole=True, low=1, hint="1 or more steps, e.g. 10"),
    "callbacks.health.rules.*.baseline_steps": Rule(whole=True, low=1, hint="1 or more, e.g. 5"),
    "callbacks.health.rules.*.first_layers": Rule(whole=True, low=1, hint="1 or more, e.g. 3"),
    "callbacks.health.rules.*.max_fraction": Rule(
        low=0, high=1, hint="a share in [0, 1], e.g. 0.5"
    ),
    "callbacks.health.rules.*.tolerance": Rule(low=0, hint="a share >= 0, e.g. 0.05"),
    "callbacks.health.rules.*.min_delta": Rule(low=0, hint="a change >= 0, e.g. 0.0"),
    "callbacks.health.rules.*.min_decrease": Rule(low=0, hint="a share >= 0, e.g. 0.01"),
    "callbacks.health.rules.*.growth": Rule(
        low=1, low_open=True, hint="a factor above 1, e.g. 1000"
    ),
    "callbacks.health.rules.*.max_norm": Rule(
        low=0, low_open=True, hint="a norm above 0, e.g. 1000"
    ),
    "callbacks.health.rules.*.ratio": Rule(low=0, low_open=True, hint="a ratio above 0, e.g. 1e-5"),
    "callbacks.health.rules.*.min_rms": Rule(low=0, hint="an RMS >= 0, e.g. 1e-8"),
    "callbacks.health.rules.*.max_std_ratio": Rule(low=1, hint="a ratio >= 1, e.g. 1e5"),
    "callbacks.health.rules.*.min_activation_std": Rule(low=0, hint="a deviation >= 0, e.g. 1e-6"),
}

_MODES = Choice(("max", "min"), hint="max (accuracy-like) or min (a loss or an error)")
# Spelled here (torch-free): the same as bincount.models.network (HEADS, TTA_VIEWS, PRIORS);
# tests/test_validate.py checks they agree. The resizes are bincount.preprocess's own.
HEADS = ("classify", "ordinal", "regress")
TTAS = (False, True, "none", "flips", "dihedral")
PRIORS = ("train", "uniform", "balanced")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
PRECISIONS = (
    "auto",
    "32-true",
    "32",
    32,
    "16-mixed",
    "16",
    16,
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
    "64-true",
    "64",
    64,
    "transformer-engine",
    "transformer-engine-float16",
)

CHOICES: dict[str, Choice] = {
    "optimized_mode": _MODES,
    "callbacks.model_checkpoint.mode": _MODES,
    "callbacks.model_checkpoint.keep": Choice(
        ("best", "last"), hint="best or last, e.g. callbacks=last"
    ),
    "callbacks.health.rules.*.mode": _MODES,
    "callbacks.lr_monitor.logging_interval": Choice(
        ("step", "epoch"), nullable=True, hint="epoch or step"
    ),
    "data.resize": Choice(RESIZES, hint="letterbox (keep the aspect ratio) or squash"),
    "model.net.head": Choice(
        HEADS, hint="classify, ordinal or regress, e.g. model.net.head=classify"
    ),
    "model.net.tta": Choice(TTAS, nullable=True, hint="false, flips (4 views) or dihedral (8)"),
    "model.net.prior": Choice(
        PRIORS, hint="train, uniform or balanced, e.g. model.net.prior=uniform"
    ),
    "trainer.accelerator": Choice(
        ACCELERATORS, hint="auto, cpu or gpu, e.g. trainer.accelerator=cpu"
    ),
    "trainer.precision": Choice(PRECISIONS, hint="auto, 32-true, 16-mixed or bf16-mixed"),
    "test": _bool("true or false, e.g. test=false"),
    "data.rotate": _bool("true or false"),
    "data.balanced": _bool("true or false"),
    "data.resized_cache": _bool("true or false"),
    "model.net.pretrained": _bool("true or false (false: random weights)"),
    "model.net.channels_last": _bool("true or false"),
    "model.net.aux": _bool("true or false (true: train the auxiliary outputs, model.aux_weight)"),
    "model.freeze_backbone": _bool("true or false"),
    "trainer.deterministic": Choice((True, False, "warn"), nullable=True, hint="true or false"),
    "trainer.sync_batchnorm": _bool("true or false"),
    "trainer.enable_progress_bar": _bool("true, false or null (a bar on a terminal)", True),
    "callbacks.model_checkpoint.save_last": _bool("true or false"),
    "callbacks.health.rules.*.enabled": _bool("true or false"),
    "callbacks.health.rules.*.stop": _bool("true or false"),
}

# Strategies Lightning registers (ddp and its variants, fsdp, deepspeed, ...): a name of these
# families; the rest are one-line errors here, not a registry dump after the model is built.
_STRATEGIES = ("auto", "ddp", "dp", "fsdp", "deepspeed", "single_device", "single_xla", "xla")


def _value(cfg: DictConfig, key: str):
    try:
        return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    except OmegaConfBaseException as e:
        raise BincountError(f"{key} cannot be read ({e}): fix the override") from None


def _leaves(node, prefix: str = "") -> list[str]:
    """Every key of a config under `node` (dotted), values not resolved."""
    out: list[str] = []
    if isinstance(node, DictConfig):
        for k in node:
            key = f"{prefix}{k}"
            child = node._get_node(k)
            value = child._value() if child is not None else None
            if isinstance(value, dict | DictConfig) and not OmegaConf.is_interpolation(node, k):
                out += _leaves(node[k], f"{key}.")
            else:
                out.append(key)
    return out


def _matching(keys: list[str], pattern: str) -> list[str]:
    if "*" not in pattern:
        return [pattern]
    depth = pattern.count(".")
    return [k for k in keys if k.count(".") == depth and fnmatchcase(k, pattern)]


def rule_for(key: str) -> Rule | Choice | None:
    """The rule or choice of a dotted key (a pattern's), or None."""
    for table in (RULES, CHOICES):
        for pattern, rule in table.items():
            if key.count(".") == pattern.count(".") and fnmatchcase(key, pattern):
                return rule
    return None


def _fail(cfg: DictConfig, key: str, value, problem: str, rule) -> BincountError:
    node = key.rsplit(".", 1)[-1]
    # optimizer.lr is ${lr}: name it as the user did when the values agree
    top = node in RULES or node in CHOICES
    shown = node if top and node != key and _value(cfg, node) == value else key
    if isinstance(value, bool) or value is None:
        value_text = str(value).lower() if value is not None else "null"
    else:
        value_text = repr(value)
    hint = f": set {rule.hint}" if rule.hint else ""
    return BincountError(f"{shown}={value_text} {problem}{hint}")


def check_setting(key: str, value, name: str | None = None, hint: str | None = None) -> None:
    """BincountError (one line) when `value` breaks the rule of the config key `key` (RULES,
    CHOICES): for a setting given to a library call or a command rather than by the config.
    `name` and `hint` say it as the caller's user gave it (e.g. `--batch-size`)."""
    rule = rule_for(key)
    if rule is None:
        raise KeyError(f"no rule for {key} in bincount.validate")
    problem = rule.problem(value)
    if problem is not None:
        said = hint or rule.hint
        raise BincountError(
            f"{name or key}={config_text(value)} {problem}" + (f": set {said}" if said else "")
        )


def check_train_config(cfg: DictConfig) -> None:
    """BincountError (one line) for the first user setting that is out of range or unknown."""
    keys = _leaves(cfg)
    for table in (RULES, CHOICES):
        for pattern, rule in table.items():
            for key in _matching(keys, pattern):
                value = _value(cfg, key)
                if value is _MISSING:
                    continue
                problem = rule.problem(value)
                if problem is not None:
                    raise _fail(cfg, key, value, problem, rule)
    _check_moved(cfg)
    _check_strategy(cfg)
    _check_counts(cfg)
    _check_split(cfg)
    _check_end(cfg)
    _check_stages(cfg)
    _check_balanced(cfg)
    _check_ckpt_path(cfg)


def _moved(key: str, value) -> BincountError:
    return BincountError(
        f"model.{key} is a setting of the network now: set model.net.{key} instead "
        f"(e.g. model.net.{key}={config_text(value)})"
    )


def check_moved_overrides(overrides: list[str], conf: str | os.PathLike) -> None:
    """`model.head=ordinal` on the command line, the path before issue 25 (a key of the `net`
    node of `conf`/model/efficientnet_lite0.yaml): the new path named, before Hydra says "not
    in struct"."""
    net = OmegaConf.load(os.path.join(conf, "model", "efficientnet_lite0.yaml")).net
    net_keys = [k for k in net if not k.startswith("_")]
    for arg in overrides:
        key, _, value = arg.partition("=")
        parts = key.lstrip("+~").split(".")
        if _ and len(parts) == 2 and parts[0] == "model" and parts[1] in net_keys:
            raise _moved(parts[1], value)


def _check_moved(cfg: DictConfig) -> None:
    """A network setting given at the model's top (`+model.head=ordinal`) instead of in its
    `net` node: name the new path rather than ignore it."""
    model, net = _value(cfg, "model"), _value(cfg, "model.net")
    if not isinstance(model, DictConfig) or not isinstance(net, DictConfig):
        return
    for key in model:
        if key in net and not key.startswith("_"):
            raise _moved(key, _value(cfg, f"model.net.{key}"))


def _check_strategy(cfg: DictConfig) -> None:
    value = _value(cfg, "trainer.strategy")
    if value is _MISSING or not isinstance(value, str | None):
        return
    if value is None or (value.split("_")[0] not in _STRATEGIES and value not in _STRATEGIES):
        raise BincountError(
            f"trainer.strategy={value} is not a strategy Lightning knows: set auto, or ddp "
            "for several GPUs (trainer=ddp)"
        )


def _check_counts(cfg: DictConfig) -> None:
    counts = _value(cfg, "data.counts")
    if counts is _MISSING:
        return
    fix = "list the counts to learn, e.g. data.counts=[1,2,3,4,5]"
    if not isinstance(counts, ListConfig | list) or not len(counts):
        raise BincountError(f"data.counts={config_text(counts)} is empty or not a list: {fix}")
    bad = [c for c in counts if isinstance(c, bool) or not isinstance(c, int) or c < 0]
    if bad:
        raise BincountError(
            f"data.counts={config_text(counts)} holds {config_text(bad[0])}, "
            f"not a whole number >= 0: {fix}"
        )
    if len(set(counts)) != len(counts):
        raise BincountError(f"data.counts={config_text(counts)} names a count twice: {fix}")


def _check_split(cfg: DictConfig) -> None:
    split = _value(cfg, "data.split")
    if split is _MISSING:
        return
    fix = "three shares (train, val, test) that add up to 1, e.g. data.split=[0.6,0.2,0.2]"
    numbers = (
        isinstance(split, ListConfig | list)
        and len(split) == 3
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in split)
    )
    if not numbers or not all(math.isfinite(x) and x >= 0 for x in split):
        raise BincountError(f"data.split={config_text(split)} is not {fix}")
    if abs(sum(split) - 1) > 1e-6:
        raise BincountError(
            f"data.split={config_text(split)} adds up to {sum(split):g}, not 1: {fix}"
        )
    if split[0] <= 0:
        raise BincountError(f"data.split={config_text(split)} leaves no training split: {fix}")
    if split[1] <= 0:
        metric = _value(cfg, "optimized_metric")
        raise BincountError(
            f"data.split={config_text(split)} leaves no validation split, "
            "which the best checkpoint "
            f"and optimized_metric={metric} are measured on: give it a share, e.g. "
            "data.split=[0.6,0.2,0.2]"
        )
    if split[2] <= 0 and _value(cfg, "test") is True:
        raise BincountError(
            f"data.split={config_text(split)} leaves no test split, "
            "and test=true tests on it: give "
            "it a share (e.g. data.split=[0.6,0.2,0.2]) or set test=false"
        )


def _check_end(cfg: DictConfig) -> None:
    """A training without end cannot run a schedule planned over all its steps."""
    epochs, steps = _value(cfg, "trainer.max_epochs"), _value(cfg, "trainer.max_steps")
    endless = epochs in (-1, None) and steps in (-1, None, _MISSING)
    scheduler = _value(cfg, "scheduler")
    planned = isinstance(scheduler, DictConfig) and "_target_" in scheduler
    if endless and planned:
        raise BincountError(
            f"trainer.max_epochs={'null' if epochs is None else epochs} trains without end, "
            "but the learning-rate schedule is planned over the whole run: set a number of "
            "epochs (e.g. trainer.max_epochs=6), trainer.max_steps, or scheduler=none"
        )


def _check_stages(cfg: DictConfig) -> None:
    """A data.progressive stage that starts at or after trainer.max_epochs never trains: said in
    a warning (a short debug run, debug=limit, is meant; a 4-epoch run of best_single, whose
    224 px stage starts at epoch 5, trains at 160 px only)."""
    stages, epochs = _value(cfg, "data.progressive"), _value(cfg, "trainer.max_epochs")
    if not isinstance(stages, ListConfig | list) or not isinstance(epochs, int) or epochs < 1:
        return
    late = [
        s for s in stages if isinstance(s, ListConfig | list) and len(s) == 2 and s[0] >= epochs
    ]
    if late:
        first, size = late[0]
        logging.getLogger(__name__).warning(
            f"data.progressive stage [{first}, {size}] starts at epoch {first} (from 0) but "
            f"trainer.max_epochs={epochs}: this run never trains at {size} px (validation and "
            f"answers are at data.image_size); to train at it, start the stage earlier (e.g. "
            f"data.progressive=[[0,160],[{max(epochs - 1, 0)},{size}]]) or set "
            "data.progressive=null"
        )


def _check_balanced(cfg: DictConfig) -> None:
    """model.net.prior=balanced fits its shift on validation photos the model has not trained on;
    with data.train_on=[train,val] it would fit on training photos (a shift of nothing)."""
    train_on = _value(cfg, "data.train_on")
    trains_on_val = isinstance(train_on, ListConfig | list) and "val" in train_on
    if _value(cfg, "model.net.prior") == "balanced" and trains_on_val:
        raise BincountError(
            f"model.net.prior=balanced fits its per-count shift on the validation split, but "
            f"data.train_on={config_text(train_on)} trains on it: for a refit on train and val set "
            "model.net.prior=uniform, or keep data.train_on=[train]"
        )


def _check_ckpt_path(cfg: DictConfig) -> None:
    """ckpt_path (resume): a complete checkpoint file (torch saves a zip: a truncated one has
    no end record), checked here rather than by a traceback from deep in Lightning."""
    path = _value(cfg, "ckpt_path")
    if path is _MISSING or path is None:
        return
    fix = (
        "give the last.ckpt of a run to resume, e.g. "
        "ckpt_path=outputs/<run>/checkpoints/last.ckpt, or ckpt_path=null to start afresh"
    )
    if not isinstance(path, str) or not path.strip():
        raise BincountError(f"ckpt_path={config_text(path)} is not a path: {fix}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BincountError(f"ckpt_path={path} does not exist: {fix}") from None
    except OSError as e:
        raise BincountError(f"ckpt_path={path} cannot be read ({e.strerror}): {fix}") from None
    if not stat.S_ISREG(mode):
        raise BincountError(f"ckpt_path={path} is not a file: {fix}")
    try:
        whole = zipfile.is_zipfile(path)
    except OSError as e:
        raise BincountError(f"ckpt_path={path} cannot be read ({e.strerror}): {fix}") from None
    if not whole:
        raise BincountError(
            f"ckpt_path={path} is not a complete checkpoint (truncated, or not one torch "
            f"saved): {fix}"
        )


def config_text(value) -> str:
    """A config value as a Hydra override spells it: [train,val], true, null."""
    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value)
    if isinstance(value, list):
        return "[" + ",".join(config_text(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return str(value)
