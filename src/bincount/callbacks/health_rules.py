"""The training-health rules: pure checks over what the `TrainingHealth` callback recorded.

Each rule looks at a `History` (per-step losses and per-layer gradient statistics, per-epoch
train/val losses, statistics of the first forward pass, dead-unit fractions) and returns the
evidence when it fires, or None. Thresholds are the dataclass fields, set from the config
(`callbacks.health.rules.<name>.<field>`); `stop: true` makes a rule end the training.

Modelled on SageMaker Debugger's built-in rules (VanishingGradient, ExplodingTensor,
PoorWeightInitialization, LossNotDecreasing, Overfit, Overtraining, DeadRelu), computed
in the training process so they work the same locally, in DDP and inside a SageMaker job.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, fields
from typing import ClassVar

from bincount.errors import BincountError


@dataclass
class StepStats:
    step: int
    epoch: int
    loss: float
    # layer name -> (L2 norm, root mean square) of its gradients; layers in the model's order
    # (the callback empties it for old steps: the rules look at the recent ones)
    grads: dict[str, tuple[float, float]]
    total_norm: float = field(init=False)

    def __post_init__(self):
        self.total_norm = math.sqrt(sum(n * n for n, _ in self.grads.values()))


@dataclass
class EpochStats:
    epoch: int
    step: int
    train_loss: float | None
    val_loss: float | None
    monitor: float | None  # the metric overtraining watches (val/loss by default)


@dataclass
class History:
    steps: list[StepStats] = field(default_factory=list)
    epochs: list[EpochStats] = field(default_factory=list)
    # the first training batch, before any update: layer -> weight std / output std
    weight_std: dict[str, float] = field(default_factory=dict)
    activation_std: dict[str, float] = field(default_factory=dict)
    # (step, {activation layer: fraction of its units that were 0 for the whole batch})
    dead_units: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    nonfinite: list[tuple[int, str]] = field(default_factory=list)  # (step, what)


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


@dataclass
class Rule:
    """A check with thresholds. `when`: 'start' (first batch), 'step' or 'epoch'."""

    name: ClassVar[str] = ""
    when: ClassVar[str] = "step"
    hint: ClassVar[str] = ""
    enabled: bool = True
    stop: bool = False

    def check(self, h: History) -> dict | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def judged(self, h: History) -> bool:
        """Whether the run was long enough for this rule to reach a verdict."""
        return bool(h.steps)

    def needs(self) -> str:
        """What a run must have for a verdict (shown when it was too short)."""
        return "one training step"


@dataclass
class NonFinite(Rule):
    """NaN or inf in the loss or the gradients."""

    name: ClassVar[str] = "non_finite"
    hint: ClassVar[str] = (
        "the loss or gradients became NaN/inf: lower lr, set trainer.gradient_clip_val=1.0, "
        "or use precision 32-true"
    )
    stop: bool = True

    def check(self, h: History) -> dict | None:
        if h.nonfinite:
            step, what = h.nonfinite[-1]
            return {"step": step, "what": what, "message": f"{what} is not finite"}
        return None


@dataclass
class ExplodingGradients(Rule):
    """The total gradient norm above `max_norm`, or `growth` times its early median."""

    name: ClassVar[str] = "exploding_gradients"
    hint: ClassVar[str] = (
        "gradients are exploding: lower lr (by 10x), set trainer.gradient_clip_val=1.0, "
        "or warm up the learning rate (scheduler=onecycle)"
    )
    max_norm: float = 1e3
    growth: float = 1e3
    baseline_steps: int = 5

    def check(self, h: History) -> dict | None:
        last = h.steps[-1]
        norm = last.total_norm
        if not math.isfinite(norm):
            return None  # the nan rule reports it
        worst = max(last.grads.items(), key=lambda kv: kv[1][0], default=(None, (0.0, 0.0)))
        evidence = {"total_norm": norm, "largest_layer": worst[0], "largest_norm": worst[1][0]}
        if norm > self.max_norm:
            return {**evidence, "message": f"gradient norm {norm:.3g} > max_norm {self.max_norm:g}"}
        early = _finite(s.total_norm for s in h.steps[: self.baseline_steps])
        if len(h.steps) > self.baseline_steps and early:
            base = statistics.median(early)
            if base > 0 and norm > self.growth * base:
                return {
                    **evidence,
                    "baseline_norm": base,
                    "message": f"gradient norm {norm:.3g} is {norm / base:.0f}x its early "
                    f"median {base:.3g} (growth limit {self.growth:g}x)",
                }
        return None


@dataclass
class VanishingGradients(Rule):
    """Input-side layers get almost no gradient: gradient RMS below `min_rms`, or the first
    layers' norm below `ratio` times the largest layer norm, for `patience` recorded steps."""

    name: ClassVar[str] = "vanishing_gradients"
    hint: ClassVar[str] = (
        "the first layers hardly learn (vanishing gradients): use ReLU-type activations and "
        "normalisation layers, a residual backbone, He/Kaiming initialisation, or a higher lr"
    )
    min_rms: float = 1e-8
    ratio: float = 1e-5
    first_layers: int = 3
    patience: int = 5

    def _vanishing(self, s: StepStats) -> dict | None:
        layers = list(s.grads.items())
        if len(layers) < 2:
            return None
        largest = max(n for _, (n, _) in layers)
        first = layers[: self.first_layers]
        first_norm = max(n for _, (n, _) in first)
        first_rms = max(r for _, (_, r) in first)
        if not (math.isfinite(largest) and largest > 0):
            return None
        if first_rms < self.min_rms or first_norm < self.ratio * largest:
            return {
                "first_layers": {k: {"norm": n, "rms": r} for k, (n, r) in first},
                "largest_norm": largest,
                "ratio": first_norm / largest,
            }
        return None

    def judged(self, h: History) -> bool:
        return len(h.steps) >= self.patience

    def needs(self) -> str:
        return f"{self.patience} training steps"

    def check(self, h: History) -> dict | None:
        recent = h.steps[-self.patience :]
        if len(recent) < self.patience:
            return None
        found = [self._vanishing(s) for s in recent]
        if all(found):
            ev = found[-1]
            return {
                **ev,
                "message": f"the first {self.first_layers} layers' gradient is "
                f"{ev['ratio']:.1e} of the largest layer's for {self.patience} steps",
            }
        return None


@dataclass
class PoorInitialization(Rule):
    """At the start: layers with constant weights (e.g. all zeros: every unit the same), or
    outputs that collapsed (std < `min_activation_std`) or spread over > `max_std_ratio`."""

    name: ClassVar[str] = "poor_initialization"
    when: ClassVar[str] = "start"
    hint: ClassVar[str] = (
        "poor weight initialisation: use the pretrained weights (model.net.pretrained=true) or a "
        "random init scaled to the layer (Kaiming/Xavier); never constant or zero weights"
    )
    min_activation_std: float = 1e-6
    max_std_ratio: float = 1e5

    def judged(self, h: History) -> bool:
        return bool(h.weight_std)

    def needs(self) -> str:
        return "the first training batch of a run that does not resume"

    def check(self, h: History) -> dict | None:
        # The last layer may start at zero on purpose (a zero-initialised head is healthy).
        constant = [k for k, v in list(h.weight_std.items())[:-1] if v == 0.0]
        acts = {k: v for k, v in list(h.activation_std.items())[:-1] if math.isfinite(v)}
        collapsed = [k for k, v in acts.items() if v < self.min_activation_std]
        live = [v for v in acts.values() if v >= self.min_activation_std]
        spread = max(live) / min(live) if len(live) > 1 else 1.0
        problems = []
        if constant:
            problems.append(f"{len(constant)} layers have constant weights")
        if collapsed:
            problems.append(
                f"{len(collapsed)} layers output a constant (std < {self.min_activation_std:g})"
            )
        if spread > self.max_std_ratio:
            problems.append(f"output std varies {spread:.1e}x across layers")
        if not problems:
            return None
        return {
            "constant_weight_layers": constant[:10],
            "collapsed_layers": collapsed[:10],
            "activation_std_ratio": spread,
            "message": "; ".join(problems),
        }


@dataclass
class LossNotDecreasing(Rule):
    """The mean training loss over `window` steps did not fall by `min_decrease` (relative)
    below the best earlier window (or the first step's loss), `patience` windows in a row."""

    name: ClassVar[str] = "loss_not_decreasing"
    hint: ClassVar[str] = (
        "the training loss does not go down: if it diverged lower lr; if it is flat raise lr, "
        "check the labels (data.counts) and that the backbone is not frozen"
    )
    window: int = 10
    min_decrease: float = 0.01
    patience: int = 3

    def judged(self, h: History) -> bool:
        return len(h.steps) >= self.window * (self.patience + 1)

    def needs(self) -> str:
        return f"{self.window * (self.patience + 1)} training steps"

    def check(self, h: History) -> dict | None:
        losses = [s.loss for s in h.steps]
        n = len(losses) // self.window
        if n < self.patience + 1 or len(losses) % self.window:
            return None  # judge once per full window
        means = [
            statistics.fmean(losses[i * self.window : (i + 1) * self.window]) for i in range(n)
        ]
        if not all(math.isfinite(m) for m in means):
            return None  # the nan rule reports it
        # the best before: an earlier window, or the very first loss (before any update),
        # so a loss that blew up and came half-way back down still counts as not decreasing
        best_before = min(losses[0], *means[: n - self.patience])
        recent = means[n - self.patience :]
        if all(m > best_before * (1 - self.min_decrease) for m in recent):
            return {
                "window_means": means,
                "best_earlier": best_before,
                "message": f"mean loss of the last {self.patience} windows of {self.window} "
                f"steps ({', '.join(f'{m:.3g}' for m in recent)}) is not below the best "
                f"earlier loss ({best_before:.3g})",
            }
        return None


@dataclass
class Overfitting(Rule):
    """Validation loss rose more than `tolerance` (relative) above its minimum and stayed up
    for `patience` epochs, while the training loss kept falling."""

    name: ClassVar[str] = "overfitting"
    when: ClassVar[str] = "epoch"
    hint: ClassVar[str] = (
        "overfitting: more data or augmentation (data.jitter), more regularisation "
        "(model.net.drop_rate, optimizer weight decay), fewer epochs, or keep the best checkpoint"
    )
    patience: int = 3
    tolerance: float = 0.05

    def judged(self, h: History) -> bool:
        return len(h.epochs) > self.patience

    def needs(self) -> str:
        return f"{self.patience + 1} validations"

    def check(self, h: History) -> dict | None:
        ep = [e for e in h.epochs if e.val_loss is not None and e.train_loss is not None]
        if len(ep) < self.patience + 1:
            return None
        best = min(range(len(ep)), key=lambda i: ep[i].val_loss)
        after = ep[best + 1 :]
        if len(after) < self.patience:
            return None
        recent = after[-self.patience :]
        rising = all(e.val_loss > ep[best].val_loss * (1 + self.tolerance) for e in recent)
        falling = recent[-1].train_loss < ep[best].train_loss
        if rising and falling:
            last = recent[-1]
            return {
                "best_epoch": ep[best].epoch,
                "val_loss": [e.val_loss for e in ep],
                "train_loss": [e.train_loss for e in ep],
                "message": f"val loss {ep[best].val_loss:.3g} -> {last.val_loss:.3g} since "
                f"epoch {ep[best].epoch} while train loss fell {ep[best].train_loss:.3g} -> "
                f"{last.train_loss:.3g}",
            }
        return None


@dataclass
class Overtraining(Rule):
    """The monitored validation metric did not improve by `min_delta` for `patience` epochs."""

    name: ClassVar[str] = "overtraining"
    when: ClassVar[str] = "epoch"
    hint: ClassVar[str] = (
        "no validation gain for several epochs: stop earlier (trainer.max_epochs, or an "
        "EarlyStopping callback) and use checkpoints/best.ckpt"
    )
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "min"  # min for a loss, max for accuracy (see the callback's `monitor`)

    def judged(self, h: History) -> bool:
        return len(h.epochs) > self.patience

    def needs(self) -> str:
        return f"{self.patience + 1} validations"

    def check(self, h: History) -> dict | None:
        values = [(e.epoch, e.monitor) for e in h.epochs if e.monitor is not None]
        if len(values) <= self.patience:
            return None
        sign = 1.0 if self.mode == "min" else -1.0
        best_i = 0
        for i, (_, v) in enumerate(values):
            if sign * v < sign * values[best_i][1] - self.min_delta:
                best_i = i
        since = len(values) - 1 - best_i
        if since >= self.patience:
            return {
                "best_epoch": values[best_i][0],
                "best": values[best_i][1],
                "values": [v for _, v in values],
                "message": f"no improvement for {since} epochs since epoch "
                f"{values[best_i][0]} (best {values[best_i][1]:.4g})",
            }
        return None


@dataclass
class DeadUnits(Rule):
    """A ReLU layer with more than `max_fraction` of its units at 0 for a whole batch, in
    `patience` consecutive checks."""

    name: ClassVar[str] = "dead_relu"
    hint: ClassVar[str] = (
        "many ReLU units never activate: lower lr, use LeakyReLU/SiLU, or check the init "
        "of the biases"
    )
    max_fraction: float = 0.5
    patience: int = 3
    every_n_steps: int = 10

    def judged(self, h: History) -> bool:
        return len(h.dead_units) >= self.patience

    def needs(self) -> str:
        return f"ReLU layers and {self.patience * self.every_n_steps} training steps"

    def check(self, h: History) -> dict | None:
        recent = h.dead_units[-self.patience :]
        if len(recent) < self.patience:
            return None
        bad = [
            {k: v for k, v in fractions.items() if v > self.max_fraction} for _, fractions in recent
        ]
        if all(bad):
            worst = max(bad[-1].items(), key=lambda kv: kv[1])
            return {
                "layers": bad[-1],
                "message": f"{len(bad[-1])} ReLU layers have > {self.max_fraction:.0%} dead "
                f"units (worst {worst[0]}: {worst[1]:.0%})",
            }
        return None


RULES: dict[str, type[Rule]] = {
    r.name: r
    for r in (
        NonFinite,
        ExplodingGradients,
        VanishingGradients,
        PoorInitialization,
        LossNotDecreasing,
        Overfitting,
        Overtraining,
        DeadUnits,
    )
}


def build_rules(config: dict | None) -> list[Rule]:
    """Rule objects from `{name: {field: value}}`; unnamed rules run with their defaults."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(RULES))
    if unknown:
        raise BincountError(
            f"unknown health rule(s) {unknown}: callbacks.health.rules takes {sorted(RULES)}"
        )
    rules = []
    for name, cls in RULES.items():
        options = dict(config.get(name) or {})
        valid = {f.name for f in fields(cls)}
        bad = sorted(set(options) - valid)
        if bad:
            raise BincountError(
                f"callbacks.health.rules.{name} has no option {bad}: use {sorted(valid)}"
            )
        rules.append(cls(**options))
    return rules
