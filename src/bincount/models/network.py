"""CountNet: a timm backbone with a head over the counts, and test-time augmentation.

A plain `nn.Module` (no Lightning): what inference, export and evaluation load from a
checkpoint (`bincount.inference.loading`), and what `CountModule` (models/module.py) trains.
Its state_dict keys (`net.*`, the backbone; `head.*`, the count head) are the checkpoint's own.
"""

from __future__ import annotations

import torch
from torch import nn

from bincount.errors import BincountError
from bincount.models import backbones, heads

# model.tta -> how many views of each image are averaged at evaluation and inference.
TTA_VIEWS = {False: 1, "none": 1, True: 4, "flips": 4, "dihedral": 8}
# The auxiliary targets' names (bincount.data.contents.NAMES; models never import data).
AUX_TARGETS = ("log_volume", "log_weight", "distinct")
# How an image is made square (bincount.data.transforms.RESIZES).
RESIZES = ("letterbox", "squash")
# Which prior over the counts the probabilities assume (model.prior): `train`, the training
# split's count frequencies (what training learns); `uniform`, every count equally likely (a
# balanced stream of bins): those frequencies divided out of every answer.
PRIORS = ("train", "uniform")


class CountNet(nn.Module):
    """Image batch (N, 3, S, S), normalised as `preprocess` -> per-count scores (N, K) whose
    softmax is the probability of each count (every head). `n_aux` extra outputs of the
    backbone (auxiliary training targets) never reach the scores."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        counts: list[int] = (1, 2, 3, 4, 5),
        image_size: int = 224,
        pretrained: bool = True,
        weights: str | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        channels_last: bool = True,
        head: str = "classify",
        tta: bool | str = False,
        n_aux: int = 0,
        resize: str = "letterbox",
        prior: str = "train",
        train_counts: list[int] | None = None,
    ):
        super().__init__()
        if prior not in PRIORS:
            raise BincountError(
                f"model.prior={prior!r}: use train (the training split's count frequencies) "
                "or uniform (every count equally likely, for a balanced stream of bins)"
            )
        self.backbone_name = backbone
        self.counts = [int(c) for c in counts]
        self.channels_last = channels_last
        self.tta = tta
        self.n_aux = n_aux
        self.head = heads.build(head, self.counts)
        self.net = backbones.create_backbone(
            backbone,
            self.head.n_outputs + self.n_aux,
            pretrained=pretrained,
            weights=weights,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )
        mean, std = backbones.normalization(self.net)
        if resize not in RESIZES:
            raise BincountError(
                f"resize={resize!r}: use letterbox (keep the aspect ratio, pad to a square) or "
                "squash (stretch to a square); set it once, with data.resize"
            )
        # Everything inference needs to preprocess like training; saved in every checkpoint.
        # (data/transforms.py builds the transform from this dict; models never import data)
        self.preprocess = {
            "resize": resize,
            "image_size": int(image_size),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        }
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.prior = prior
        # Not in the state_dict (checkpoint keys stay net.* and head.*): rebuilt from the
        # training split's counts, which checkpoints keep in their hyper_parameters.
        self.register_buffer("log_prior_shift", torch.zeros(len(self.counts)), persistent=False)
        self.train_counts: list[int] | None = None
        self.set_train_counts(train_counts)

    def set_train_counts(self, train_counts: list[int] | None) -> None:
        """How many training photos each count has; with prior=uniform, their frequencies are
        divided out of every answer (post-hoc logit adjustment: log p - log freq, renormalised)."""
        if train_counts is None:
            self.train_counts = None
            self.log_prior_shift.zero_()
            return
        train_counts = [int(n) for n in train_counts]
        if len(train_counts) != len(self.counts) or min(train_counts) < 0:
            raise BincountError(
                f"train_counts={train_counts}: need one count of photos >= 0 per count "
                f"{self.counts}"
            )
        self.train_counts = train_counts
        if self.prior == "uniform":
            freq = torch.tensor(train_counts, dtype=torch.float64).clamp_min(1.0)
            shift = -(freq / freq.sum()).log()
            self.log_prior_shift.copy_((shift - shift.mean()).to(self.log_prior_shift))

    def scores(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's per-count log-probabilities from its raw input, under `prior`."""
        return self._under_prior(self.head(raw))

    def _under_prior(self, log_probs: torch.Tensor) -> torch.Tensor:
        if self.prior == "train":
            return log_probs
        return (log_probs.float() + self.log_prior_shift).log_softmax(1)

    @classmethod
    def from_hparams(cls, hparams: dict, n_aux: int, **overrides) -> CountNet:
        """The net a checkpoint's hyper_parameters describe (CountModule's arguments; those
        a checkpoint lacks take CountModule's defaults, as Lightning's loading does)."""
        names = (
            "backbone",
            "counts",
            "image_size",
            "pretrained",
            "weights",
            "drop_rate",
            "drop_path_rate",
            "channels_last",
            "head",
            "tta",
            "resize",
            "prior",
            "train_counts",
        )
        kwargs = {k: hparams[k] for k in names if k in hparams}
        return cls(**{**kwargs, "n_aux": n_aux, **overrides})

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters()) + list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's outputs: the head's raw input, then the auxiliary outputs (if any)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw input (the auxiliary outputs, if any, left out)."""
        return self.outputs(x)[:, : self.head.n_outputs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-count scores whose softmax is the probability of each count (every head)."""
        views = TTA_VIEWS.get(self.tta or False)
        if views is None:
            raise BincountError(f"model.tta={self.tta!r}: use false, flips (or true) or dihedral")
        if self.training or views == 1:
            return self.scores(self.raw(x))
        # Test-time augmentation: symmetries of each image (none changes the count), their
        # probabilities averaged. One batch of views x n images, so one pass through the net.
        n = x.shape[0]
        batch = [x, x.flip(3), x.flip(2), x.flip(2, 3)]
        if views == 8:  # and the transposes: the rotations by 90 and 270 degrees among them
            t = x.transpose(2, 3)
            batch += [t, t.flip(3), t.flip(2), t.flip(2, 3)]
        probs = self.head(self.raw(torch.cat(batch))).softmax(1).view(views, n, -1).mean(0)
        return self._under_prior(probs.clamp_min(1e-7).log())

    def predict_counts(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.counts, device=logits.device)[logits.argmax(1)]
