"""What one training process did, for checking a distributed run: which images it trained on
in each epoch (its shard) and a digest of its final weights. Written to
SM_OUTPUT_DATA_DIR/ranks/rank-<global rank>.json (part of the job's output.tar.gz); all ranks of
a healthy DDP run have disjoint shards and the same digest.
Container side only (imports Lightning); the bridge adds it to the callbacks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DistributedSampler

from bincount.fileio import atomic_write_json


def digest(tensors) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankRecord(pl.Callback):
    def __init__(self, out_dir: str, host: str = ""):
        self.out_dir = Path(out_dir)
        self.host = host
        self.epochs: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        dataset = getattr(loader, "dataset", None)
        entry: dict = {"epoch": trainer.current_epoch}
        # Only a DistributedSampler is listed: it is a pure function of (seed, epoch), whereas
        # listing a RandomSampler would draw from the global RNG and change the run.
        if isinstance(sampler, DistributedSampler) and hasattr(dataset, "ids"):
            entry["ids"] = [dataset.ids[i] for i in sampler]
        self.epochs.append(entry)

    def on_train_end(self, trainer, pl_module):
        record = {
            "host": self.host,
            "global_rank": trainer.global_rank,
            "node_rank": trainer.node_rank,
            "local_rank": trainer.local_rank,
            "world_size": trainer.world_size,
            "epochs": self.epochs,
            "global_step": trainer.global_step,
            "params_sha256": digest(sorted(pl_module.named_parameters())),
            "buffers_sha256": digest(sorted(pl_module.named_buffers())),
        }
        atomic_write_json(self.out_dir / f"rank-{trainer.global_rank}.json", record)
