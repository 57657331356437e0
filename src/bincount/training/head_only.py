"""Head-only training on cached frozen-backbone features: a sweep trial in seconds.

`python train.py experiment=head_sweep [lr=... batch_size=...]` (or `-m` over a grid or
`+sweep=hpo hydra/sweeper=optuna`) selects `runner=head_only`, this instead of the Lightning
loop: the backbone is
frozen, so its features are computed once (`bincount.training.features`, cached for every
later trial)
and only the head (the classifier and the count head) trains, with the run's optimizer,
scheduler, label smoothing, dropout, epochs, batch size and seed. Each epoch is validated and
the best epoch by `val/acc` is kept, like the Lightning run's best checkpoint.

The run folder is the same as `train()`'s: config.yaml, metrics.json (objective, val of the
kept epoch, best_epoch, last, test, confusion), csv/metrics.csv (written by Lightning's
CSVLogger, one row an epoch: `train/loss_epoch` and the val figures at the epoch's last
optimizer step, as a fit run's) and checkpoints/best.ckpt, a full CountModule checkpoint
(frozen backbone + trained head) that `bincount evaluate|serve|export` read like any other.
What is not the same: no augmentation (features are of the evaluation transform) and no TTA.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from bincount import rundir, validate
from bincount.config.hydra import instantiate
from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes
from bincount.models.metrics import CountMetrics
from bincount.training import features

log = logging.getLogger("bincount")


def _net(module):
    """The CountNet of a CountModule, or the CountNet itself."""
    return module if hasattr(module, "scores") else module.net


def _raw(module, x: torch.Tensor) -> torch.Tensor:
    """The head's raw input from pooled features (auxiliary outputs, if any, left out)."""
    net = _net(module)
    return net.net.get_classifier()(x)[:, : net.head.n_outputs]


def _logits(module, x: torch.Tensor) -> torch.Tensor:
    """Per-count log-probabilities under the model's prior (a CountModule or a CountNet)."""
    return _net(module).scores(_raw(module, x))


def evaluate(module, split: dict) -> tuple[dict[str, float], list[list[int]]]:
    metrics = CountMetrics(module.counts)
    with torch.no_grad():
        logits = _logits(module, split["x"])
        loss = torch.nn.functional.cross_entropy(logits.float(), split["y"]).item()
    metrics.update(logits.argmax(1), split["y"])
    return {"loss": loss, **metrics.compute()}, metrics.confusion_matrix()


def train_head(
    module,
    splits: dict,
    epochs: int,
    batch_size: int,
    seed: int = 42,
    drop_rate: float = 0.0,
) -> tuple[dict, list[dict]]:
    """Train module's head on `splits["train"]`; keeps the best epoch by val accuracy.
    Returns (the best epoch's val metrics, one dict of figures per epoch: its number, the
    optimizer steps taken before its end (Lightning's `step` of epoch-end figures),
    `train/loss_epoch` and `val/...`)."""
    train = splits["train"]
    n = len(train["y"])
    if n == 0:
        raise BincountError("the train split is empty: use more data")
    validate.check_setting("batch_size", batch_size)
    module.train()
    params = [p for p in module.head_parameters() if p.requires_grad]
    factory = module.optimizer_factory
    base_lr = factory.keywords.get("lr", 1e-3)
    opt = factory([{"name": "head", "params": params, "lr": base_lr}])
    steps_per_epoch = n // batch_size if n > batch_size else 1  # drop_last, as the loader does
    scheduler = None
    if callable(module.scheduler_factory):
        scheduler = module.scheduler_factory(opt, total_steps=max(epochs * steps_per_epoch, 1))
    generator = torch.Generator().manual_seed(seed)
    smoothing = float(module.hparams.get("label_smoothing", 0.0))
    best, best_state, history = None, None, []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = torch.nn.functional.dropout(train["x"][idx], drop_rate, training=True)
            loss = module.head.loss(_raw(module, x), train["y"][idx], smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
        val, _ = evaluate(module, splits["val"]) if len(splits["val"]["y"]) else ({}, None)
        history.append(
            {
                "epoch": epoch,
                "step": (epoch + 1) * steps_per_epoch - 1,
                "train/loss_epoch": sum(losses) / len(losses),
                **{f"val/{k}": v for k, v in val.items()},
            }
        )
        if best is None or val.get("acc", 0.0) > best.get("acc", 0.0):
            best = val
            best_state = copy.deepcopy(
                {
                    k: v
                    for k, v in module.state_dict().items()
                    if "net." not in k or "classifier" in k
                }
            )
    module.load_state_dict(best_state, strict=False)
    module.eval()
    return best or {}, history


def save_checkpoint(module, path: Path) -> Path:
    """A Lightning checkpoint of `module` (no Trainer state), loadable by `load_from_checkpoint`."""
    quiet = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # "GPU available: False ..." says nothing here
    try:
        trainer = pl.Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
        )
    finally:
        quiet.setLevel(level)
    trainer.strategy.connect(module)
    buf = io.BytesIO()
    torch.save(trainer._checkpoint_connector.dump_checkpoint(weights_only=True), buf)
    return atomic_write_bytes(path, buf.getvalue())


def run(cfg: DictConfig) -> float:
    """`runner=head_only`: same config, same run folder as `runner=fit`, returns the objective."""
    started = time.monotonic()
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out, cfg)
    metric = cfg.optimized_metric
    if not metric.startswith("val/"):
        raise BincountError(f"optimized_metric={metric}: head-only runs optimize a val/ metric")
    pl.seed_everything(cfg.seed, workers=True)
    module = instantiate(cfg.model, freeze_backbone=True)
    datamodule = instantiate(cfg.data, network=module.net.data_config)
    module.use_data(datamodule.preprocess, datamodule.class_counts)
    datamodule.prepare_data()
    splits, info = features.load_or_extract(module, datamodule, cfg.data.cache_dir)
    if module.net.prior != "train":  # model.net.prior=uniform
        train_y = splits["train"]["y"]
        module.set_train_counts([int((train_y == i).sum()) for i in range(len(module.counts))])
    fit_start = time.monotonic()
    val, history = train_head(
        module,
        splits,
        epochs=int(cfg.trainer.max_epochs),
        batch_size=int(cfg.batch_size),
        seed=int(cfg.seed),
        drop_rate=float(cfg.model.net.get("drop_rate", 0.0)),
    )
    head_seconds = time.monotonic() - fit_start
    name = metric.removeprefix("val/")
    if name not in val:
        raise BincountError(
            f"optimized_metric={metric} is not computed; pick one of val/{sorted(val)}"
        )
    best = rundir.best_checkpoint(out)
    save_checkpoint(module, best)
    results = {
        "objective": {"name": metric, "value": float(val[name])},
        "best_checkpoint": str(best),
        "counts": list(module.counts),
        "val": {f"val/{k}": float(v) for k, v in val.items()},
        "fit_seconds": round(time.monotonic() - started, 1),
        "epochs": int(cfg.trainer.max_epochs),
        "head_only": {
            "features": info["path"],
            "features_built": info["built"],
            "extract_seconds": info["extract_seconds"],
            "head_seconds": round(head_seconds, 2),
        },
    }
    if cfg.get("test", True) and len(splits["test"]["y"]):
        test, confusion = evaluate(module, splits["test"])
        results["test"] = {f"test/{k}": float(v) for k, v in test.items()}
        results["test_confusion"] = confusion
    results["seconds"] = round(time.monotonic() - started, 1)
    kept = _kept_epoch(history, val)
    if kept is not None:
        results["best_epoch"] = kept
    if history:
        last = history[-1]
        results["last"] = {k: v for k, v in last.items() if k == "epoch" or k.startswith("val/")}
    log_history(out, history, cfg)
    rundir.write_metrics(out, results)
    test = results.get("test", {})
    print(
        f"run: {out}\n{metric} = {val[name]:.4f}"
        + (f"  test/acc={test['test/acc']:.4f}" if test else "")
        + f"\nhead-only: {results['epochs']} epochs in {head_seconds:.1f}s on cached features "
        f"({'extracted' if info['built'] else 'read'}: {info['path']})",
        flush=True,
    )
    return float(val[name])


def _kept_epoch(history: list[dict], val: dict) -> int | None:
    """The number of the epoch train_head kept (the first with the best val/acc)."""
    for h in history:
        if val and h.get("val/acc") == val.get("acc"):
            return int(h["epoch"])
    return None


def log_history(out: Path, history: list[dict], cfg: DictConfig) -> None:
    """csv/metrics.csv (and csv/hparams.yaml) through Lightning's CSVLogger, as a fit run's."""
    logger = CSVLogger(out, name=rundir.CSV_DIR, version="")
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    for h in history:
        logger.log_metrics({k: v for k, v in h.items() if k != "step"}, step=h["step"])
    logger.finalize("success")
