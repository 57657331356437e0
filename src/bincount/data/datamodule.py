"""The LightningDataModule over bin images: manifest -> datasets -> loaders."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import weakref
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from bincount import hardware, preprocess
from bincount.data import contents, layout, manifest, resized, sampling, sources, transforms
from bincount.errors import BincountError
from bincount.fileio import atomic_write_json

log = logging.getLogger(__name__)

#: in the run folder: the photos that failed to decode in training, skipped
BAD_IMAGES = "bad_images.json"


class BadImages:
    """Photos that failed to decode in training (changed or damaged since the manifest was
    built): each is logged, skipped (another photo stands in) and appended to a JSON-lines
    file that every DataLoader worker shares; the main process reads it back (`read`) to
    report them and to stop the run past `data.max_bad_images`."""

    def __init__(self, path: Path):
        self.path = path

    def add(self, image_id: str, path: Path, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
        log.warning("photo %s cannot be decoded (%s): skipped", path, reason)
        line = json.dumps({"id": image_id, "path": str(path), "error": reason}) + "\n"
        # one write of a short line in append mode: the workers' lines never interleave
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        """Each bad photo once, in the order first seen."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        seen: dict[str, dict] = {}
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            seen.setdefault(row.get("id"), row)
        return list(seen.values())


class BinImages(Dataset):
    """(image tensor, class index) for manifest rows; class = index of the count in `counts`.
    Each row's photo is read from its source (`row.source`; `folder` for rows without one).
    A photo that fails to decode is recorded in `bad` and the next one stands in for it."""

    def __init__(
        self,
        folder: Path,
        rows: list[manifest.Row],
        counts: list[int],
        transform,
        cache: resized.ResizedImages | None = None,
    ):
        self.folder = folder
        self.cache = cache
        self.ids = [r.id for r in rows]
        self.paths = [layout.image_path(Path(r.source or folder), r.id) for r in rows]
        index = {c: i for i, c in enumerate(counts)}
        self.targets = [index[r.count] for r in rows]
        self.transform = transform
        self.size = transform.transforms[0].size
        # (len, 3) auxiliary targets from the metadata (data/contents.py), or None
        self.aux: torch.Tensor | None = None
        self.bad: BadImages | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def _image(self, i: int):
        if self.cache is not None:  # already resized: the transform's Letterbox/Squash is a no-op
            return self.cache.image(self.ids[i])
        return transforms.open_rgb(self.paths[i], self.size)

    def __getitem__(self, i: int):
        for step in range(len(self.ids)):
            j = (i + step) % len(self.ids)
            try:
                im = self._image(j)
                break
            except transforms.DECODE_ERRORS as e:
                if self.bad is None:
                    raise BincountError(
                        f"{self.paths[j]} cannot be decoded ({e}): remove it or refetch it"
                    ) from None
                self.bad.add(self.ids[j], self.paths[j], e)
        else:
            raise BincountError(
                f"no photo of this split can be decoded (e.g. {self.paths[i]}): check data.source"
            )
        if self.aux is not None:
            return self.transform(im), self.targets[j], self.aux[j]
        return self.transform(im), self.targets[j]


class BinDataModule(pl.LightningDataModule):
    def __init__(
        self,
        source,
        cache_dir: str,
        counts: list[int] = (1, 2, 3, 4, 5),
        file_list: str | None = None,
        split: list[float] = (0.6, 0.2, 0.2),
        seed: int = 42,
        sample_seed: int | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int | None = None,
        jitter: float = 0.2,
        rotate: bool = False,
        max_per_split: int | None = None,
        resized_cache: bool = False,
        train_on: list[str] = ("train",),
        balanced: bool = False,
        train_fraction: float = 1.0,
        resize: str = "letterbox",
        copies_per_epoch: float = 1.0,
        progressive: list | None = None,
        max_bad_images: int | None = 10,
        network: dict | None = None,
    ):
        """`network`: the network's side of the preprocessing (`CountNet.data_config`: its
        backbone's mean and std, the auxiliary targets its extra outputs predict); ImageNet's
        mean and std, no targets, when None. Joined with image_size and resize once, here
        (`bincount.preprocess.resolve`): `preprocess` is what the checkpoint stores."""
        super().__init__()
        # A folder or s3:// URI, or a list of them (sources.parse_sources: copies too).
        self.sources = sources.parse_sources(source)
        self.source = source
        self.cache_dir = Path(cache_dir)
        self.counts = sorted(int(c) for c in counts)
        if not self.counts:
            raise BincountError("data.counts is empty: list the counts to train on, e.g. [1,2,3]")
        self.file_list = file_list
        self.split = tuple(float(f) for f in split)
        # the split's seed (which photo is test) and the draws' seed (which copies an epoch
        # reads, in what order): apart, so another training seed keeps the same split
        self.seed = seed
        self.sample_seed = seed if sample_seed is None else int(sample_seed)
        self.batch_size = int(batch_size)  # >= 1: bincount.validate's rule, checked with the config
        self.num_workers = hardware.loader_workers() if num_workers is None else int(num_workers)
        self.jitter = jitter
        self.rotate = bool(rotate)
        self.max_per_split = max_per_split
        self.preprocess = preprocess.resolve(network, image_size, resize)
        self.resized_cache = bool(resized_cache)
        self.train_on = tuple(train_on)
        bad = [s for s in self.train_on if s not in ("train", "val")]
        if bad or "train" not in self.train_on:
            raise BincountError(
                f"data.train_on={list(train_on)}: use [train] or, for a final refit once the "
                "recipe is chosen, [train,val] (the test split is never trained on)"
            )
        self.balanced = bool(balanced)
        self.train_fraction = float(train_fraction)
        # the metadata's figures in every batch, for the network's auxiliary outputs
        self.aux = bool((network or {}).get("aux_targets"))
        if not 0 < self.train_fraction <= 1:
            raise BincountError(
                f"data.train_fraction={train_fraction}: use a share of the training images in "
                "(0, 1], e.g. 0.5 for a point of a learning curve"
            )
        # What one training epoch reads (data/sampling.py): a share of the copies, a size by epoch.
        self.copies_per_epoch = sampling.check_share(copies_per_epoch)
        self.progressive = sampling.check_progressive(progressive, int(image_size))
        self.max_bad_images = None if max_bad_images is None else int(max_bad_images)
        scratch = tempfile.mkdtemp(prefix="bincount-bad-")
        weakref.finalize(self, shutil.rmtree, scratch, ignore_errors=True)
        self.bad = BadImages(Path(scratch) / "bad.jsonl")
        self._bad_seen = 0
        self.cache: resized.ResizedImages | None = None
        self.folder: Path | None = None  # the first source's folder
        self.folders: list[Path] = []
        self.rows: list[manifest.Row] = []
        self.manifest_path: Path | None = None
        self.datasets: dict[str, BinImages] = {}

    def prepare_data(self) -> None:
        # Runs on one process per node: fetch an s3 source and build the manifest once.
        self._load()

    def _load(self) -> None:
        located = [
            manifest.Located(sources.resolve_source(s.path, self.cache_dir), s.original, s.squashed)
            for s in self.sources
        ]
        folders = [s.folder for s in located]
        file_list = None
        if self.file_list:
            file_list = Path(self.file_list)
            if not file_list.is_absolute() and not file_list.exists():
                # a relative list is looked up in the sources, the first that has it
                found = [f / file_list for f in folders if (f / file_list).exists()]
                file_list = found[0] if found else folders[0] / file_list
        self.manifest_path, self.rows = manifest.load_or_build(
            located, self.cache_dir, self.counts, self.split, self.seed, file_list
        )
        self.folder, self.folders = folders[0], folders
        if self.resized_cache:
            images = [
                (r.id, layout.image_path(Path(r.source or folders[0]), r.id)) for r in self.rows
            ]
            path = resized.ensure(
                images,
                self.preprocess["image_size"],
                transforms.letterbox_fill(self.preprocess),
                self.cache_dir,
                resize=preprocess.resize_mode(self.preprocess),
            )
            self.cache = resized.ResizedImages(path)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if not self.rows:
            self._load()
        for split in manifest.SPLITS:
            wanted = self.train_on if split == "train" else (split,)
            rows = [r for r in self.rows if r.split in wanted]
            if self.max_per_split and len(rows) > self.max_per_split:
                rows = random.Random(self.seed).sample(rows, self.max_per_split)
            if split == "train" and self.train_fraction < 1:
                rows = self._fraction(rows)
            tf = transforms.build(
                self.preprocess, train=split == "train", jitter=self.jitter, rotate=self.rotate
            )
            self.datasets[split] = BinImages(self.folder, rows, self.counts, tf, self.cache)
            self.datasets[split].bad = self.bad
        if self.aux:
            self._attach_contents()
        sizes = {s: len(d) for s, d in self.datasets.items()}
        if not sizes["train"]:
            raise BincountError(f"the train split is empty ({sizes}): use more data")
        where = ", ".join(map(str, self.folders))
        log.info("data %s: %s (manifest %s)", where, sizes, self.manifest_path)
        if "val" in self.train_on:
            log.warning(
                "data.train_on=%s: the val split is trained on, so val figures are optimistic; "
                "only the test split measures this run",
                list(self.train_on),
            )

    def _attach_contents(self) -> None:
        """Give every dataset the metadata's auxiliary targets, standardised on train."""
        names = list(self.datasets)
        raw = [
            contents.load_paths(self.datasets[n].ids, self.datasets[n].paths, f"{n} photos")
            for n in names
        ]
        for name, aux in zip(names, contents.standardise(*raw), strict=True):
            self.datasets[name].aux = aux

    def _fraction(self, rows: list[manifest.Row]) -> list[manifest.Row]:
        """The same share of each count's training rows (at least one each), chosen by seed."""
        rng = random.Random(self.seed)
        kept: set[str] = set()
        for count in self.counts:
            ids = [r.id for r in rows if r.count == count]
            if ids:
                kept.update(rng.sample(ids, max(1, round(self.train_fraction * len(ids)))))
        return [r for r in rows if r.id in kept]

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """In the main process, per batch: report photos that failed to decode (in any
        worker) and stop the run once more than `max_bad_images` did."""
        self.check_bad_images()
        return batch

    def check_bad_images(self, stop: bool = True) -> list[dict]:
        """The photos that failed to decode so far; new ones are written to the run folder's
        bad_images.json; BincountError past `max_bad_images` (if `stop`)."""
        try:
            size = self.bad.path.stat().st_size
        except FileNotFoundError:
            return []
        if size == self._bad_seen:
            return []
        self._bad_seen = size
        bad = self.bad.read()
        self._write_bad(bad)
        if stop and self.max_bad_images is not None and len(bad) > self.max_bad_images:
            raise BincountError(
                f"{len(bad)} photos cannot be decoded (more than data.max_bad_images="
                f"{self.max_bad_images}; e.g. {bad[0]['path']}: {bad[0]['error']}): fix or "
                "refetch the data (bincount data fetch), or raise data.max_bad_images"
            )
        return bad

    def _write_bad(self, bad: list[dict]) -> None:
        trainer = getattr(self, "trainer", None)
        root = getattr(trainer, "default_root_dir", None) if trainer is not None else None
        if not root or not bad:
            return
        path = Path(root) / BAD_IMAGES
        report = {"count": len(bad), "max_bad_images": self.max_bad_images, "images": bad}
        try:
            atomic_write_json(path, report)
        except OSError as e:  # the report must not end the run
            log.warning("cannot write %s: %s", path, e)
            return
        log.warning(
            "%d photos could not be decoded and were skipped (listed in %s)", len(bad), path
        )

    def teardown(self, stage: str | None = None) -> None:
        self.check_bad_images(stop=False)  # the last ones into the report

    def class_counts(self, split: str = "train") -> list[int]:
        targets = self.datasets[split].targets
        return [targets.count(i) for i in range(len(self.counts))]

    def _sampler(self, split: str) -> WeightedRandomSampler:
        """Draws every count equally often (with replacement): an epoch still has len(ds) images."""
        ds = self.datasets[split]
        per = [max(1, n) for n in self.class_counts(split)]
        weights = torch.tensor([1.0 / per[t] for t in ds.targets], dtype=torch.double)
        gen = torch.Generator().manual_seed(self.sample_seed)
        return WeightedRandomSampler(weights, len(ds), replacement=True, generator=gen)

    def _epoch_sample(self, split: str) -> sampling.EpochSample:
        """Every original photo and a fresh share of the copies each epoch (data/sampling.py)."""
        copies = {str(f) for f, s in zip(self.folders, self.sources, strict=True) if not s.original}
        ds = self.datasets[split]
        is_copy = [str(p.parent.parent) in copies for p in ds.paths]
        return sampling.EpochSample(
            is_copy, self.copies_per_epoch, self.sample_seed, ds.targets, self.balanced
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """data.progressive: training batches at the epoch's size (validation at full size)."""
        trainer = self.trainer
        if not self.progressive or trainer is None or not trainer.training:
            return batch
        size = sampling.size_at(self.progressive, trainer.current_epoch)
        return [sampling.resize_batch(batch[0], size), *batch[1:]]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.datasets[split]
        sampler = None
        if shuffle and self.copies_per_epoch < 1:
            sampler = self._epoch_sample(split)
        elif shuffle and self.balanced:
            sampler = self._sampler(split)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle and len(ds) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
