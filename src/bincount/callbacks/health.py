"""Training health: the rules of `health_rules` checked as training runs.

`TrainingHealth` records, per optimizer step, the loss and every layer's gradient norm; at the
first batch, weight and output statistics of every conv/linear layer; every few steps, the
fraction of dead ReLU units; per validation, the train and val losses. It runs each rule at
its time, logs a warning the first time a rule fires (with the evidence and what to do), can
stop training (`stop: true` per rule), and writes to the run folder:

- `health.json`: every rule's verdict (fired / ok / too_short), when it fired, the evidence;
- `grad_norms.csv`: step, epoch, loss, total norm and each layer's gradient L2 norm.

Everything is computed in the training process, so it runs unchanged inside a SageMaker job
(the warnings go to the job's log, the files to its output).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import statistics
from array import array
from dataclasses import fields
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from bincount import rundir
from bincount.callbacks.health_rules import EpochStats, History, Rule, StepStats, build_rules
from bincount.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger("bincount")

RELUS = (nn.ReLU, nn.ReLU6)
KEEP_GRADS = 100  # recorded steps whose per-layer statistics stay in memory for the rules


def _layer_groups(module: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """Trainable parameters grouped by the module that owns them, in the model's order."""
    groups: dict[str, list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if p.requires_grad:
            groups.setdefault(name.rpartition(".")[0] or name, []).append(p)
    return list(groups.items())


def _dead_fraction(out: torch.Tensor) -> float:
    """Fraction of units (channels) that are <= 0 for every sample and position."""
    if out.dim() < 2:
        return 0.0
    dims = [d for d in range(out.dim()) if d != 1]
    alive = (out.detach() > 0).amax(dim=dims)
    return 1.0 - alive.float().mean().item()


class TrainingHealth(pl.Callback):
    def __init__(
        self,
        dirpath: str | None = None,
        rules: dict | None = None,
        every_n_steps: int = 1,
        monitor: str = "val/loss",
    ):
        self.dirpath = dirpath
        self.rules: list[Rule] = build_rules(rules)
        self.every_n_steps = max(1, int(every_n_steps))
        self.monitor = monitor
        self.history = History()
        self.findings: dict[str, dict] = {}
        self.stopped_by: str | None = None
        self._stop_requested = False
        self._groups: list[tuple[str, list[nn.Parameter]]] = []
        self._weighted: dict[nn.Module, str] = {}
        self._relus: dict[nn.Module, str] = {}
        self._handles: list = []
        self._capture_init = False
        self._capture_dead = False
        self._dead_now: dict[str, float] = {}
        self._grads: dict[str, tuple[float, float]] | None = None
        self._norm_rows: list[array] = []  # per recorded step: each layer's norm (float32)

    # ---- helpers -----------------------------------------------------------------------
    def _rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name and r.enabled), None)

    def _out_dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir)

    def _forward_hook(self, module: nn.Module, _inputs, output) -> None:
        if not module.training or not isinstance(output, torch.Tensor):
            return
        if self._capture_init and module in self._weighted:
            self.history.activation_std[self._weighted[module]] = (
                output.detach().float().std().item()
            )
        if self._capture_dead and module in self._relus:
            self._dead_now[self._relus[module]] = _dead_fraction(output)

    # ---- Lightning hooks ---------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self._handles:
            return
        self._groups = _layer_groups(pl_module)
        for name, m in pl_module.named_modules():
            weight = getattr(m, "weight", None)
            if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
                self._weighted[m] = name
                self._handles.append(m.register_forward_hook(self._forward_hook))
            elif isinstance(m, RELUS):
                self._relus[m] = name
                self._handles.append(m.register_forward_hook(self._forward_hook))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            for h in self._handles:
                h.remove()
            self._handles = []
            self._write(trainer)
            self._log_summary()

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step == 0:  # not when resuming: the start is long past
            self.history.weight_std = {
                name: m.weight.detach().float().std().item() for m, name in self._weighted.items()
            }
            self._capture_init = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        dead = self._rule("dead_relu")
        self._capture_dead = bool(dead and self._relus) and (
            trainer.global_step % dead.every_n_steps == 0
        )
        self._dead_now = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        grads, owner, numel = [], [], [0] * len(self._groups)
        for i, (_, params) in enumerate(self._groups):
            for p in params:
                if p.grad is not None:
                    grads.append(p.grad.detach())
                    owner.append(i)
                    numel[i] += p.grad.numel()
        sq = torch.zeros(len(self._groups), dtype=torch.float64)
        if grads:  # one fused pass over all the gradients, one copy to the CPU
            l2 = torch.stack(torch._foreach_norm(grads, 2)).double().cpu()
            sq.index_add_(0, torch.tensor(owner), l2.pow(2))
        self._grads = {
            name: (math.sqrt(s), math.sqrt(s / max(n, 1)))  # (L2 norm, RMS)
            for (name, _), s, n in zip(self._groups, sq.tolist(), numel, strict=True)
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else math.nan
        if not math.isfinite(loss):
            self.history.nonfinite.append((step, f"loss ({loss})"))
        if self._grads is not None:
            stats = StepStats(step=step, epoch=epoch, loss=loss, grads=self._grads)
            if not math.isfinite(stats.total_norm):
                bad = [k for k, (n, _) in self._grads.items() if not math.isfinite(n)]
                self.history.nonfinite.append((step, f"gradient of {bad[0]} (+{len(bad) - 1})"))
            self.history.steps.append(stats)
            self._norm_rows.append(array("f", [n for n, _ in self._grads.values()]))
            if len(self.history.steps) > KEEP_GRADS:  # bounded memory on long runs
                self.history.steps[-KEEP_GRADS - 1].grads = {}
            self._grads = None
        if self._capture_dead and self._dead_now:
            self.history.dead_units.append((step, dict(self._dead_now)))
        if self._capture_init:
            self._capture_init = False
            self._run_rules(trainer, "start")
        self._run_rules(trainer, "step")
        self._maybe_stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        epoch = trainer.current_epoch
        losses = [s.loss for s in self.history.steps if s.epoch == epoch and math.isfinite(s.loss)]

        def metric(key):
            v = metrics.get(key)
            return float(v) if v is not None else None

        self.history.epochs.append(
            EpochStats(
                epoch=epoch,
                step=trainer.global_step,
                train_loss=statistics.fmean(losses) if losses else None,
                val_loss=metric("val/loss"),
                monitor=metric(self.monitor),
            )
        )
        self._run_rules(trainer, "epoch")
        self._write(trainer)
        self._maybe_stop(trainer)

    # ---- rules -------------------------------------------------------------------------
    def _run_rules(self, trainer: pl.Trainer, when: str) -> None:
        for rule in self.rules:
            if not rule.enabled or rule.when != when:
                continue
            try:
                evidence = rule.check(self.history) if self._has_data(rule) else None
            except Exception as e:  # a broken check must never end a training run
                log.warning("health: rule %s failed (%s); disabling it", rule.name, e)
                rule.enabled = False
                continue
            if evidence:
                self._fire(trainer, rule, evidence)

    def _has_data(self, rule: Rule) -> bool:
        if rule.when == "step":
            return bool(self.history.steps) or bool(self.history.nonfinite)
        if rule.when == "epoch":
            return bool(self.history.epochs)
        return bool(self.history.weight_std or self.history.activation_std)

    def _fire(self, trainer: pl.Trainer, rule: Rule, evidence: dict) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch
        found = self.findings.get(rule.name)
        if found:
            found["times"] += 1
            found["last_step"] = step
            return
        message = evidence.pop("message", rule.name)
        self.findings[rule.name] = {
            "step": step,
            "epoch": epoch,
            "message": message,
            "evidence": evidence,
            "times": 1,
            "last_step": step,
        }
        log.warning(
            "health: %s at step %d (epoch %d): %s. What to do: %s",
            rule.name,
            step,
            epoch,
            message,
            rule.hint,
        )
        if rule.stop:
            self._stop_requested = True
            self.stopped_by = self.stopped_by or rule.name

    def _maybe_stop(self, trainer: pl.Trainer) -> None:
        if not any(r.stop and r.enabled for r in self.rules) or trainer.should_stop:
            return
        # a collective: every rank stops together when any rank asks
        if trainer.strategy.reduce_boolean_decision(self._stop_requested, all=False):
            trainer.should_stop = True
            log.warning("health: stopping the training (rule %s has stop: true)", self.stopped_by)

    # ---- output ------------------------------------------------------------------------
    def verdicts(self) -> dict:
        rules = {}
        for rule in self.rules:
            found = self.findings.get(rule.name)
            if not rule.enabled:
                status = "disabled"
            elif found:
                status = "fired"
            elif rule.judged(self.history):
                status = "ok"
            else:
                status = "too_short"
            thresholds = {
                f.name: getattr(rule, f.name)
                for f in fields(rule)
                if f.name not in ("enabled", "stop")
            }
            rules[rule.name] = {
                "status": status,
                "when": rule.when,
                "stop": rule.stop,
                "thresholds": thresholds,
                "hint": rule.hint,
                "needs": rule.needs(),
                **({"fired": found} if found else {}),
            }
        return {
            "status": "issues" if self.findings else "healthy",
            "fired": sorted(self.findings, key=lambda k: self.findings[k]["step"]),
            "stopped_by": self.stopped_by,
            "steps_checked": len(self.history.steps),
            "epochs_checked": len(self.history.epochs),
            "layers": [name for name, _ in self._groups],
            "rules": rules,
        }

    def _grad_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["step", "epoch", "loss", "total_norm", *(name for name, _ in self._groups)])
        for s, norms in zip(self.history.steps, self._norm_rows, strict=True):
            w.writerow(
                [s.step, s.epoch, f"{s.loss:.6g}", f"{s.total_norm:.6g}"]
                + [f"{n:.6g}" for n in norms]
            )
        return buf.getvalue()

    def _write(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        out = self._out_dir(trainer)
        atomic_write_json(out / rundir.HEALTH, _jsonable(self.verdicts()))
        atomic_write_text(out / rundir.GRAD_NORMS, self._grad_csv())

    def _log_summary(self) -> None:
        v = self.verdicts()
        log.info("health metrics: health/rules_fired=%d", len(v["fired"]))
        if not v["fired"]:
            log.info(
                "health: no rule fired (%d steps, %d epochs checked)",
                v["steps_checked"],
                v["epochs_checked"],
            )
            return
        first = ", ".join(f"{k} (step {self.findings[k]['step']})" for k in v["fired"])
        log.warning("health: %d of %d rules fired: %s", len(v["fired"]), len(self.rules), first)


def _jsonable(obj):
    """NaN/inf become strings: health.json stays valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
