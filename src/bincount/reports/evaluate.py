"""`bincount evaluate`: a checkpoint's figures on a split of its run, or on any source.

The images are a split of the run's own manifest (its config.yaml: the data and the split it
was trained with), or a folder in the bucket layout (`--data`: all its images with a count the
model knows, or one split of it with `--split`). Predictions are the argmax class of the
checkpoint's network, with the checkpoint's own preprocessing; the figures are
`bincount.models.metrics.CountMetrics` (the ones training logs): accuracy, accuracy per count,
RMSE, MAE, off-by-one, and the confusion matrix. Written: metrics.json (the figures),
predictions.csv (one row per image, with the probability of every count) and confusion.png.

Several checkpoints make an ensemble: each reads the images with its own preprocessing (size,
normalisation, test-time augmentation) and their probabilities are averaged. They must know the
same counts and, without `--data`, have been trained on the same split (the first one's run
gives the images).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from bincount import rundir, validate
from bincount.errors import BincountError
from bincount.fileio import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

EXPECTED = (
    "a checkpoint written by `python train.py` (a Lightning .ckpt whose hyperparameters hold "
    "backbone, counts and preprocess, e.g. outputs/<run>/checkpoints/best.ckpt) or its run folder"
)
SPLITS = ("train", "val", "test", "all")


@dataclass
class Evaluation:
    checkpoint: Path
    data: str
    split: str
    counts: list[int]
    paths: list[Path]
    truth: list[int]  # counts
    predicted: list[int]  # counts
    confidence: list[float]
    figures: dict[str, float]
    confusion: list[list[int]]
    probabilities: list[list[float]] | None = None  # per image, per count
    members: list[Path] | None = None  # the checkpoints averaged, when more than one
    prior: str | None = None  # the prior over counts asked for (None: each model's own)

    def summary(self) -> dict:
        return {
            "checkpoint": str(self.checkpoint),
            **({"members": [str(m) for m in self.members]} if self.members else {}),
            "data": self.data,
            "split": self.split,
            **({"prior": self.prior} if self.prior else {}),
            "images": len(self.paths),
            "counts": self.counts,
            "figures": self.figures,
            "confusion": {
                "rows": "true count",
                "columns": "predicted count",
                "matrix": self.confusion,
            },
        }


def checkpoint_file(model: str | Path) -> Path:
    """The .ckpt of a run folder or a checkpoint path; anything else is a clear error."""
    from bincount.inference import resolve

    path = resolve(model, "torch")
    if path.suffix != ".ckpt":
        raise BincountError(f"{path} is a {path.suffix or 'suffix-less'} file; expected {EXPECTED}")
    return path


def load(ckpt: Path):
    from bincount.inference import load_net

    try:
        module = load_net(ckpt)
    except BincountError:
        raise BincountError(
            f"{ckpt} could not be loaded as a bincount checkpoint; expected {EXPECTED}"
        ) from None
    missing = [k for k in ("preprocess", "counts") if not getattr(module, k, None)]
    if missing:
        raise BincountError(f"{ckpt} has no {', '.join(missing)}; expected {EXPECTED}")
    return module


def default_output(ev: Evaluation, data: str | None) -> Path:
    """Where the results go without -o: `<run>/eval/<data>-<split>` (`run-<split>` for the
    run's own split; `ensemble-...` for several models, in the first's run)."""
    tag = f"{Path(data).name if data else 'run'}-{ev.split}"
    tag = f"ensemble-{tag}" if ev.members else tag
    tag = f"{tag}-prior-{ev.prior}" if ev.prior else tag
    return rundir.eval_dir(rundir.run_folder(ev.checkpoint), tag)


def items(ckpt: Path, counts: list[int], data: str | None, split: str, cache: Path) -> list:
    """[(image path, true count)] to evaluate on."""
    if split not in SPLITS:
        raise BincountError(f"--split {split}: use one of {', '.join(SPLITS)}")
    run = rundir.run_folder(ckpt)
    if data is None:
        from bincount.reports.evalset import split_items

        if split == "all":
            return [it for s in SPLITS[:3] for it in split_items(run, s)]
        return split_items(run, split)
    from bincount.data.datamodule import BinDataModule

    config = rundir.read_config(run)
    data_cfg = (config.get("data") if config is not None else None) or {}
    spec = {k: data_cfg[k] for k in ("split", "seed") if k in data_cfg}
    dm = BinDataModule(source=data, cache_dir=str(cache), counts=counts, **spec)
    dm.setup()
    chosen = SPLITS[:3] if split == "all" else (split,)
    out = []
    for s in chosen:
        ds = dm.datasets[s]
        out += [(p, dm.counts[t]) for p, t in zip(ds.paths, ds.targets, strict=True)]
    if not out:
        raise BincountError(
            f"no images of counts {counts} in {data} ({split}): nothing to evaluate"
        )
    return out


def probabilities(module, paths: list[Path], batch_size: int = 32) -> torch.Tensor:
    """(images, counts) probabilities of the module, with its own preprocessing."""
    from bincount.data import transforms

    pre = module.preprocess
    tf = transforms.build(pre, train=False)
    size = int(pre["image_size"])
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack(
                [tf(transforms.open_rgb(p, size)) for p in paths[start : start + batch_size]]
            )
            out.append(module(batch).float().softmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, len(module.counts))


def fit_val_shift(module, ckpt: Path, batch_size: int = 32) -> list[float]:
    """prior=balanced: fit the per-count shift (`bincount.models.shift`) on the validation split
    of the checkpoint's run, with the module's own preprocessing and TTA, and set it."""
    from bincount.models import shift
    from bincount.reports.evalset import split_items

    run = rundir.run_folder(ckpt)
    cfg = rundir.read_config(run)
    if cfg is not None and "val" in cfg.get("data", {}).get("train_on", ()):
        raise BincountError(
            f"{run} trained on its validation split "
            f"(data.train_on={validate.config_text(cfg.data.train_on)}), "
            "so the balanced prior's shift cannot be fitted on it: use --prior uniform"
        )
    index = {int(c): i for i, c in enumerate(module.counts)}
    val = [(p, index[c]) for p, c in split_items(run, "val") if c in index]
    module.set_val_shift(None)  # the probabilities under the uniform prior
    probs = probabilities(module, [p for p, _ in val], batch_size)
    fitted = shift.fit(probs.clamp_min(1e-7).log(), torch.tensor([t for _, t in val]))
    module.set_val_shift(fitted)
    log.info(
        "model.net.prior=balanced: shift %s (counts %s) fitted on %d validation photos",
        fitted,
        list(module.counts),
        len(val),
    )
    return fitted


def set_prior(module, ckpt: Path, prior: str) -> None:
    """Make `module` answer under `prior` (model.net.prior): uniform divides the training split's
    count frequencies out; a checkpoint from before model.net.prior gets them from its run;
    balanced also fits the shift on its run's validation split when the checkpoint has none."""
    from bincount.models.network import PRIORS

    if prior not in PRIORS:
        raise BincountError(f"--prior {prior}: use one of {', '.join(PRIORS)}")
    module.prior = prior
    train_counts = module.train_counts
    if prior != "train" and train_counts is None:
        from bincount.reports.evalset import split_items

        train = [c for _, c in split_items(rundir.run_folder(ckpt), "train")]
        train_counts = [train.count(c) for c in module.counts]
        log.info("%s: training photos per count %s (its run's train split)", ckpt, train_counts)
    module.set_train_counts(train_counts)
    if prior == "balanced" and module.val_shift is None:
        fit_val_shift(module, ckpt)


def figures(
    counts: list[int], truth: list[int], predicted: list[int]
) -> tuple[dict, list[list[int]]]:
    """CountMetrics of true and predicted counts: (figures, confusion matrix)."""
    from bincount.models.metrics import CountMetrics

    index = {c: i for i, c in enumerate(counts)}
    metrics = CountMetrics(counts)
    metrics.update(
        torch.tensor([index[c] for c in predicted]), torch.tensor([index[c] for c in truth])
    )
    return metrics.compute(), metrics.confusion_matrix()


def evaluate(
    model: str | Path | list[str | Path],
    data: str | None = None,
    split: str | None = None,
    cache: Path | None = None,
    batch_size: int = 32,
    tta: bool | str | None = None,
    prior: str | None = None,
) -> Evaluation:
    """`tta` None keeps each model's own test-time augmentation (model.net.tta); else overrides it.
    `prior` None keeps each model's own prior over counts (model.net.prior); else overrides it.
    A list of models is an ensemble: their probabilities are averaged."""
    validate.check_setting("batch_size", batch_size, "--batch-size", "--batch-size 32")
    ckpts = [checkpoint_file(m) for m in (model if isinstance(model, list | tuple) else [model])]
    if not ckpts:
        raise BincountError("no model to evaluate: pass a run folder or a checkpoint")
    modules = [load(c) for c in ckpts]
    for ckpt, module in zip(ckpts, modules, strict=True):
        if tta is not None:
            module.tta = tta
        if prior is not None:
            set_prior(module, ckpt, prior)
    counts = [int(c) for c in modules[0].counts]
    for ckpt, module in zip(ckpts[1:], modules[1:], strict=True):
        if [int(c) for c in module.counts] != counts:
            raise BincountError(
                f"{ckpt} counts {list(module.counts)}, {ckpts[0]} counts {counts}: an ensemble's "
                "members must know the same counts"
            )
    split = split or ("all" if data else "test")
    chosen = items(
        ckpts[0],
        counts,
        data,
        split,
        cache or rundir.eval_dir(rundir.run_folder(ckpts[0]), "cache"),
    )
    if data is None:
        for ckpt in ckpts[1:]:
            if (
                items(ckpt, counts, None, split, rundir.eval_dir(rundir.run_folder(ckpt), "cache"))
                != chosen
            ):
                raise BincountError(
                    f"{ckpt} was trained on another split than {ckpts[0]}: its {split} images "
                    "differ. Evaluate the ensemble on a folder instead (--data FOLDER), or "
                    "train the members with the same data and seed"
                )
    paths = [p for p, _ in chosen]
    truth = [c for _, c in chosen]
    log.info(
        "evaluating %s on %d images (%s, %s)",
        ", ".join(map(str, ckpts)),
        len(paths),
        data or "the run's data",
        split,
    )
    probs = torch.stack([probabilities(m, paths, batch_size) for m in modules]).mean(0)
    confidence, classes = probs.max(dim=1) if len(paths) else (torch.zeros(0), torch.zeros(0))
    predicted = [counts[i] for i in classes.long().tolist()]
    figs, confusion = figures(counts, truth, predicted)
    return Evaluation(
        ckpts[0],
        data or "run",
        split,
        counts,
        paths,
        truth,
        predicted,
        confidence.tolist(),
        figs,
        confusion,
        probabilities=probs.tolist(),
        members=ckpts if len(ckpts) > 1 else None,
        prior=prior,
    )


def confusion_png(ev: Evaluation) -> bytes:
    from bincount.reports.run_plots import _figure, _png

    k = len(ev.counts)
    fig = _figure(1.0 + 0.9 * k, 0.6 + 0.9 * k)
    ax = fig.subplots()
    matrix = torch.tensor(ev.confusion, dtype=torch.float32)
    rows = matrix.sum(dim=1, keepdim=True).clamp(min=1)
    im = ax.imshow((matrix / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            share = float(matrix[i, j] / rows[i, 0])
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                color="white" if share > 0.5 else "black",
            )
    labels = [str(c) for c in ev.counts]
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    acc, macro = ev.figures["acc"], ev.figures.get("macro_acc", float("nan"))
    ax.set(
        xlabel="predicted count",
        ylabel="true count",
        title=f"{ev.split}: {len(ev.paths)} images, acc {acc:.3f}, macro acc {macro:.3f}",
    )
    fig.colorbar(im, ax=ax, label="share of the true count's images")
    return _png(fig)


def write(ev: Evaluation, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "count", "predicted", "confidence"] + [f"p_{c}" for c in ev.counts])
    probs = ev.probabilities or [[] for _ in ev.paths]
    for p, t, c, conf, ps in zip(
        ev.paths, ev.truth, ev.predicted, ev.confidence, probs, strict=True
    ):
        w.writerow([str(p), t, c, f"{conf:.4f}"] + [f"{x:.4f}" for x in ps])
    return [
        rundir.write_metrics(out, ev.summary()),
        atomic_write_text(out / "predictions.csv", buf.getvalue()),
        atomic_write_bytes(out / "confusion.png", confusion_png(ev)),
    ]


def text(ev: Evaluation) -> str:
    f = ev.figures
    per = " ".join(f"{c}:{f[f'acc_count_{c}']:.2f}" for c in ev.counts)
    name = f"ensemble of {len(ev.members)}" if ev.members else str(ev.checkpoint)
    return "\n".join(
        [
            f"{name} on {ev.data} ({ev.split}): {len(ev.paths)} images",
            "  ".join(
                f"{k}={f[k]:.4f}"
                for k in ("acc", "macro_acc", "rmse", "mae", "off_by_one")
                if k in f
            ),
            f"accuracy per count: {per}",
        ]
    )
