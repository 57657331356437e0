"""`runner=fit` (the default): build everything from the config, fit, test, write the run's
files. The returned number is `cfg.optimized_metric` (best `val/acc` by default): what sweeps
optimize.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import WeightAveraging

from bincount import hardware, rundir
from bincount.callbacks.history import ValHistory
from bincount.config.hydra import instantiate, instantiate_dict
from bincount.errors import BincountError
from bincount.training import balance, identity, trackers

log = logging.getLogger("bincount")


def _no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Drop Lightning's advertising tips and a deprecation notice it raises against itself."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_no_tips)  # once: a set
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _trainer(cfg: DictConfig, callbacks: list, loggers: list) -> pl.Trainer:
    overrides = {}
    if cfg.trainer.get("enable_progress_bar") is None:
        overrides["enable_progress_bar"] = sys.stderr.isatty()
    if str(cfg.trainer.get("precision")) == "auto":  # bf16 on a GPU that has it, else fp32
        overrides["precision"] = hardware.precision("auto", str(cfg.trainer.get("accelerator")))
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
        **overrides,
    )


def run(cfg: DictConfig) -> float:
    """`runner=fit`: the Lightning loop; returns `cfg.optimized_metric`."""
    started = time.monotonic()
    quiet_lightning()
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out, cfg)
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    module = instantiate(cfg.model)  # with its net (model.net)
    # The data takes the network's side of the preprocessing (mean, std, auxiliary targets);
    # the module takes the data's resolved preprocessing and, at fit start, its class counts.
    datamodule = instantiate(cfg.data, network=module.net.data_config)
    module.use_data(datamodule.preprocess, datamodule.class_counts)
    ident = identity.from_context(cfg)
    history = ValHistory()
    tracking = trackers.Tracking(ident, cfg, out)
    callbacks = [*instantiate_dict(cfg.get("callbacks")), history, tracking]
    loggers = trackers.build(cfg.get("logger"), ident)
    trainer = _trainer(cfg, callbacks, loggers)
    module._log_hyperparams = False  # the trackers get theirs from `tracking` (not 140 params)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.monotonic() - started
    checkpoint = trainer.checkpoint_callback
    val, best_epoch, last = kept_figures(trainer, history, checkpoint)

    best_path = getattr(checkpoint, "best_model_path", "") or ""
    best_score = getattr(checkpoint, "best_model_score", None)
    metric_name = cfg.optimized_metric
    if best_score is not None and getattr(checkpoint, "monitor", None) == metric_name:
        objective = float(best_score)
    elif metric_name in val:
        objective = val[metric_name]
    else:
        raise BincountError(
            f"optimized_metric={metric_name} was never logged; pick one of {sorted(val)}"
        )

    ident = tracking.identity  # with the data's fingerprint
    results: dict = {
        "objective": {"name": metric_name, "value": objective},
        "best_checkpoint": best_path or None,
        "counts": list(module.counts),
        "val": val,  # the kept (best) epoch's: the checkpoint served
        "best_epoch": best_epoch,
        "last": last,  # the last epoch's, with its number
        "identity": {"name": ident.name, "sweep_key": ident.sweep_key, **ident.tags()},
        "fit_seconds": round(fit_seconds, 1),
        "precision": str(trainer.precision),
        "epochs": trainer.current_epoch,
    }
    ckpt = best_path if best_path and Path(best_path).exists() else None
    shift = balance.balance(module, ckpt, write=trainer.is_global_zero)
    if shift is not None:
        results["val_shift"] = shift  # model.net.prior=balanced: fitted on validation
    if cfg.get("test", True):
        if ckpt is None:
            log.warning("no best checkpoint (fast_dev_run?): testing the final weights")
        # Lightning's weight averaging (callbacks=ema) would load the raw weights back from the
        # checkpoint for testing; its state_dict holds the averaged ones, validated and served.
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
        tested = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        results["test"] = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
        results["test_confusion"] = module.test_confusion
    results["seconds"] = round(time.monotonic() - started, 1)
    if trainer.is_global_zero:
        rundir.write_metrics(out, results)
        trackers.finish(loggers, ident, results, trainer.global_step, str(cfg.optimized_mode))
        print_summary(results, out)
    end_tracker_runs(loggers)
    return objective


def kept_figures(trainer, history: ValHistory, checkpoint) -> tuple[dict, int | None, dict]:
    """(the kept epoch's val figures, its number, the last epoch's figures with its number).
    The kept epoch is the best checkpoint's (the last one without a checkpoint)."""
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    last_record = history.last()
    last = dict(last_record) if last_record else {"epoch": trainer.current_epoch, **final}
    last.pop("step", None)
    kept = history.kept(checkpoint)
    if kept is None:
        log.warning(
            "the best checkpoint's epoch is not in this run's record (resumed from an older "
            "checkpoint?): metrics.json's val figures are the last epoch's"
        )
        return final, None, last
    val = {k: v for k, v in kept.items() if k.startswith("val/")}
    return val, kept["epoch"], last


def end_tracker_runs(loggers: list) -> None:
    """Finish W&B runs: Lightning would otherwise log the next trial of a multirun into this
    run (it reuses an open `wandb.run`)."""
    for lg in loggers:
        run = getattr(lg, "_experiment", None)
        if type(lg).__name__ == "WandbLogger" and run is not None:
            run.finish()


def objective_line(name: str, value: float) -> str:
    """`best val/acc=0.406250`: the line a SageMaker tuning job's metric definition reads the
    trial's objective from (the last `val/acc=` of the log; the container prints it too)."""
    return f"best {name}={value:.6f}"


def print_summary(results: dict, out: Path) -> None:
    test = results.get("test", {})
    name, value = results["objective"]["name"], results["objective"]["value"]
    lines = [f"run: {out}"]
    if results.get("identity"):
        lines[0] += f"  ({results['identity']['name']})"
    kept = objective_line(name, value)
    if results.get("best_epoch") is not None:
        kept += f" (epoch {results['best_epoch']} of {results['last'].get('epoch')})"
    lines.append(kept)
    if test:
        keys = ["test/acc", "test/rmse", "test/mae", "test/off_by_one"]
        lines.append("  ".join(f"{k}={test[k]:.4f}" for k in keys if k in test))
        per = [f"{k.split('_')[-1]}:{v:.2f}" for k, v in test.items() if "acc_count_" in k]
        lines.append("test accuracy per count: " + " ".join(per))
    lines.append(f"took {results['seconds']:.0f}s; metrics in {rundir.metrics_path(out)}")
    print("\n".join(lines), flush=True)
