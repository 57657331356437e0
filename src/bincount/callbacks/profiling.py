"""Where the training time goes: `StepProfile` times every training step from Lightning's hooks.

A step is split into:
- data: waiting for the next batch (the loader; with num_workers=0, decoding and resizing too);
- forward: `training_step` (forward pass and loss) up to the backward pass;
- backward: the backward pass;
- optimizer: from the end of the backward pass to the end of the step (gradient clipping, the
  optimizer and scheduler steps, other callbacks' per-step work, logging).

It also measures images/s (train, and validation), peak memory (RSS of the training process
and of its DataLoader workers, read from /proc; GPU memory when on CUDA) and CPU utilisation
(process and workers, as a share of all cores), and reads Lightning's own SimpleProfiler when
the trainer has one (`debug=profile` sets it). At the end it writes `profile.json` to the run
folder and logs one summary line and its advice (e.g. "data loading is 60% of the step").
"""

from __future__ import annotations

import logging
import os
import resource
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import SimpleProfiler

from bincount import rundir
from bincount.fileio import atomic_write_json

log = logging.getLogger("bincount")

PHASES = ("data", "forward", "backward", "optimizer")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    """Direct child processes (DataLoader workers), found by their parent id in /proc."""
    found = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return found
    for entry in entries:
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found


def _rss_bytes(pid: int | str = "self") -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss_bytes(pid: int) -> int:
    """Proportional set size: pages shared with the parent (forked workers) counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return _rss_bytes(pid)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu_now() -> dict[str, float]:
    """CPU seconds of this process and its children (finished ones plus those still alive)."""
    t = os.times()
    alive = sum(_cpu_seconds(c) for c in _children(os.getpid()))
    return {"main": t.user + t.system, "workers": t.children_user + t.children_system + alive}


def _batch_size(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 0


def _peak_rss_lifetime() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def advise(summary: dict) -> list[str]:
    """The top recommendations for a profile summary, most important first."""
    out: list[tuple[float, str]] = []
    split = {k: v["fraction"] for k, v in summary.get("split", {}).items()}
    loader = summary.get("loader", {})
    workers = loader.get("num_workers")
    cores = summary.get("cpu", {}).get("cores") or 1
    data = split.get("data", 0.0)
    if data >= 0.25:
        if workers == 0:
            fix = "set data.num_workers=2 (or more, up to the cores) so batches load in parallel"
        elif workers is not None and workers < cores:
            fix = f"raise data.num_workers (now {workers}, {cores} cores) or cache resized images"
        else:
            fix = "cache resized images (decode once at data.image_size) or use faster storage"
        out.append((data, f"data loading is {data:.0%} of the step: {fix}"))
    compute = split.get("forward", 0.0) + split.get("backward", 0.0)
    if compute >= 0.6:
        out.append(
            (
                0.25,
                f"forward+backward are {compute:.0%} of the step (compute-bound): a smaller "
                "data.image_size, a lighter backbone, or a GPU (trainer=gpu, 16-mixed) speed "
                "it up",
            )
        )
    opt = split.get("optimizer", 0.0)
    optimizer = summary.get("optimizer", {})
    if opt >= 0.1 and optimizer.get("fused") is False:
        out.append(
            (
                opt + 0.05,
                f"the optimizer phase is {opt:.0%} of the step and {optimizer['name']} is not "
                "fused: try +optimizer.fused=true (the whole step in one kernel, on CPU too)",
            )
        )
    elif opt >= 0.2:
        out.append(
            (
                opt,
                f"the optimizer phase is {opt:.0%} of the step: check per-step callbacks and "
                "logging (trainer.log_every_n_steps; debug=health adds gradient statistics: "
                "callbacks.health.every_n_steps), or freeze the backbone",
            )
        )
    cpu = summary.get("cpu", {}).get("utilisation_pct")
    if cpu is not None and cores > 1 and cpu < 60:
        out.append(
            (
                0.3,
                f"the CPU is only {cpu:.0f}% busy over {cores} cores: raise batch_size or "
                "data.num_workers",
            )
        )
    val = summary.get("validation_fraction", 0.0)
    if val >= 0.3:
        out.append(
            (
                val * 0.8,
                f"validation takes {val:.0%} of the training time: validate less often "
                "(trainer.check_val_every_n_epoch) or on fewer batches (trainer.limit_val_batches)",
            )
        )
    total_ram = summary.get("memory", {}).get("machine_mb")
    memory = summary.get("memory", {})
    workers = memory.get("workers_peak_pss_mb", memory.get("workers_peak_rss_mb", 0))
    peak = memory.get("peak_rss_mb", 0) + workers
    if total_ram and peak > 0.8 * total_ram:
        out.append(
            (
                0.9,
                f"peak memory {peak:.0f} MB is near the machine's {total_ram:.0f} MB: "
                "lower batch_size or data.num_workers",
            )
        )
    return [text for _, text in sorted(out, key=lambda t: -t[0])]


def _machine_mb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


class StepProfile(pl.Callback):
    def __init__(
        self, dirpath: str | None = None, skip_first_steps: int = 2, memory_every_n_steps: int = 5
    ):
        self.dirpath = dirpath
        self.skip_first_steps = max(0, int(skip_first_steps))
        self.memory_every_n_steps = max(1, int(memory_every_n_steps))
        self.steps: list[dict] = []
        self.epochs: list[dict] = []
        self.val_seconds = 0.0
        self.val_images = 0
        self.summary: dict = {}
        self._sync = False
        self._cuda_device = None
        self._t: dict[str, float] = {}
        self._peak = {"main": 0, "workers": 0, "workers_pss": 0}

    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _sample_memory(self) -> None:
        self._peak["main"] = max(self._peak["main"], _rss_bytes())
        children = _children(os.getpid())
        self._peak["workers"] = max(self._peak["workers"], sum(_rss_bytes(c) for c in children))
        self._peak["workers_pss"] = max(
            self._peak["workers_pss"], sum(_pss_bytes(c) for c in children)
        )

    # ---- hooks -------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        self._sync = pl_module.device.type == "cuda"
        # Kept: by on_fit_end Lightning has moved the module back to the CPU.
        self._cuda_device = pl_module.device if self._sync else None
        if self._sync:
            torch.cuda.reset_peak_memory_stats(self._cuda_device)
        self._cpu0 = _cpu_now()
        self._wall0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = {"epoch": self._now()}
        self._t["end"] = self._t["epoch"]
        self._val_at_epoch = self.val_seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = self._now()
        self._t.update(start=now, data=now - self._t["end"], images=_batch_size(batch))
        self._t.pop("fwd_end", None)
        self._t.pop("bwd_end", None)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._t["fwd_end"] = self._now()

    def on_after_backward(self, trainer, pl_module) -> None:
        self._t["bwd_end"] = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = self._now()
        t = self._t
        fwd_end = t.get("fwd_end", end)
        bwd_end = t.get("bwd_end", fwd_end)
        self.steps.append(
            {
                "step": trainer.global_step,
                "epoch": trainer.current_epoch,
                "images": t["images"],
                "data": t["data"],
                "forward": fwd_end - t["start"],
                "backward": bwd_end - fwd_end,
                "optimizer": end - bwd_end,
            }
        )
        t["end"] = end
        if (len(self.steps) - 1) % self.memory_every_n_steps == 0:
            self._sample_memory()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = self._now()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self.val_images += _batch_size(batch)

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_seconds += self._now() - self._val_start
        if self._t:
            self._t["end"] = self._now()  # validation time is not data time of the next step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        now = self._now()
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "seconds": now - self._t.get("epoch", now),
                "val_seconds": self.val_seconds - getattr(self, "_val_at_epoch", 0.0),
            }
        )

    def on_fit_end(self, trainer, pl_module) -> None:
        self._sample_memory()
        self.summary = self.summarize(trainer, pl_module)
        if trainer.is_global_zero:
            out = Path(self.dirpath or trainer.default_root_dir)
            atomic_write_json(out / rundir.PROFILE, self.summary)
            self._log(out / rundir.PROFILE)

    # ---- summary -----------------------------------------------------------------------
    def summarize(self, trainer, pl_module) -> dict:
        measured = self.steps[self.skip_first_steps :] or self.steps
        totals = {p: sum(s[p] for s in measured) for p in PHASES}
        step_total = sum(totals.values()) or 1e-9
        per_step = [sum(s[p] for p in PHASES) for s in measured]
        images = sum(s["images"] for s in measured)
        compute = totals["forward"] + totals["backward"] + totals["optimizer"]
        wall = time.perf_counter() - self._wall0
        cpu1 = _cpu_now()
        cores = os.cpu_count() or 1
        cpu = {k: cpu1[k] - self._cpu0[k] for k in cpu1}
        loader = getattr(trainer, "train_dataloader", None)
        train_time = sum(e["seconds"] for e in self.epochs) or wall
        summary = {
            "steps": len(self.steps),
            "steps_measured": len(measured),
            "skipped_first_steps": len(self.steps) - len(measured),
            "first_step_seconds": round(sum(self.steps[0][p] for p in PHASES), 4)
            if self.steps
            else None,
            "step_seconds": {
                "mean": round(statistics.fmean(per_step), 4) if per_step else None,
                "median": round(statistics.median(per_step), 4) if per_step else None,
                "max": round(max(per_step), 4) if per_step else None,
            },
            "split": {
                p: {
                    "seconds": round(totals[p], 3),
                    "fraction": round(totals[p] / step_total, 4),
                    "mean_ms": round(1000 * totals[p] / max(len(measured), 1), 2),
                }
                for p in PHASES
            },
            "throughput": {
                "train_images_per_s": round(images / step_total, 2),
                "compute_images_per_s": round(images / compute, 2) if compute else None,
                "val_images_per_s": round(self.val_images / self.val_seconds, 2)
                if self.val_seconds
                else None,
            },
            "validation_seconds": round(self.val_seconds, 2),
            "validation_fraction": round(self.val_seconds / train_time, 4) if train_time else 0,
            "epochs": [{k: round(v, 3) for k, v in e.items()} for e in self.epochs],
            "wall_seconds": round(wall, 2),
            "memory": {
                "peak_rss_mb": round(self._peak["main"] / 2**20, 1),
                "workers_peak_rss_mb": round(self._peak["workers"] / 2**20, 1),
                # RSS counts the pages workers share with the training process once per
                # worker; PSS splits them: what the workers really add
                "workers_peak_pss_mb": round(self._peak["workers_pss"] / 2**20, 1),
                "process_lifetime_peak_rss_mb": round(_peak_rss_lifetime() / 2**20, 1),
                "machine_mb": round(_machine_mb() or 0, 0) or None,
            },
            "cpu": {
                "cores": cores,
                "utilisation_pct": round(100 * (cpu["main"] + cpu["workers"]) / wall / cores, 1),
                "main_pct_of_one_core": round(100 * cpu["main"] / wall, 1),
                "workers_pct_of_one_core": round(100 * cpu["workers"] / wall, 1),
                "torch_threads": torch.get_num_threads(),
            },
            "loader": {
                "num_workers": getattr(loader, "num_workers", None),
                "batch_size": getattr(loader, "batch_size", None),
            },
            "device": str(self._cuda_device or pl_module.device),
            "optimizer": _optimizer(trainer),
            "timeline": [
                [s["step"], s["epoch"], *(round(s[p] * 1000, 2) for p in PHASES)]
                for s in self.steps
            ],
        }
        if self._sync:
            summary["memory"]["gpu_peak_mb"] = round(
                torch.cuda.max_memory_allocated(self._cuda_device) / 2**20, 1
            )
        profiler = getattr(trainer, "profiler", None)
        if isinstance(profiler, SimpleProfiler):
            summary["lightning_profiler"] = _lightning_actions(profiler)
        summary["advice"] = advise(summary)
        return summary

    def _log(self, path: Path) -> None:
        s = self.summary
        split = " ".join(f"{p} {v['fraction']:.0%}" for p, v in s["split"].items())
        log.info(
            "profile: step %.3fs (%s); %.1f images/s; peak RSS %.0f MB (+%.0f MB PSS workers); "
            "CPU %.0f%% of %d cores; %s",
            s["step_seconds"]["mean"] or 0,
            split,
            s["throughput"]["train_images_per_s"],
            s["memory"]["peak_rss_mb"],
            s["memory"]["workers_peak_pss_mb"],
            s["cpu"]["utilisation_pct"],
            s["cpu"]["cores"],
            path,
        )
        # key=value tokens, for the metric regexes of a SageMaker job
        figures = {
            "profile/step_seconds": s["step_seconds"]["mean"] or 0,
            "profile/images_per_s": s["throughput"]["train_images_per_s"],
            **{f"profile/{p}_fraction": v["fraction"] for p, v in s["split"].items()},
            "profile/peak_rss_mb": s["memory"]["peak_rss_mb"],
            "profile/cpu_pct": s["cpu"]["utilisation_pct"],
        }
        log.info("profile metrics: %s", " ".join(f"{k}={v:.4g}" for k, v in figures.items()))
        for advice in s["advice"]:
            log.info("profile advice: %s", advice)


def _optimizer(trainer) -> dict:
    """The (first) optimizer's class, and whether it is fused (None: it has no fused form)."""
    optimizers = getattr(trainer, "optimizers", None) or []
    if not optimizers:
        return {}
    opt = optimizers[0]
    fused = bool(opt.defaults["fused"]) if "fused" in opt.defaults else None
    return {"name": type(opt).__name__, "fused": fused}


def _lightning_actions(profiler: SimpleProfiler, top: int = 12) -> list[dict]:
    rows = [
        {"action": k, "calls": len(v), "total_s": round(sum(v), 3)}
        for k, v in profiler.recorded_durations.items()
        if v
    ]
    return sorted(rows, key=lambda r: -r["total_s"])[:top]
