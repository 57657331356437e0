"""CountNet: a timm backbone with a head over the counts, and test-time augmentation.

A plain `nn.Module` (no Lightning): what inference, export and evaluation load from a
checkpoint (`bincount.inference.loading`), and what `CountModule` (models/module.py) trains.
Its state_dict keys (`net.*`, the backbone; `head.*`, the count head) are the checkpoint's own.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from bincount import preprocess
from bincount.errors import BincountError
from bincount.models import backbones, heads
from bincount.preprocess import AUX_TARGETS

# model.net.tta -> how many views of each image are averaged at evaluation and inference.
TTA_VIEWS = {False: 1, "none": 1, True: 4, "flips": 4, "dihedral": 8}
# Which prior over the counts the probabilities assume (model.net.prior): `train`, the training
# split's count frequencies (what training learns); `uniform`, every count equally likely (a
# balanced stream of bins): those frequencies divided out of every answer; `balanced`, uniform
# and then a per-count shift fitted on the validation split after training
# (`bincount.models.shift`: the head's leaning towards the middle counts taken out).
PRIORS = ("train", "uniform", "balanced")


def _plain(value):
    """Hydra's ListConfig as a list (checkpoints then load with weights_only=True)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return [_plain(v) for v in value]


class CountNet(nn.Module):
    """Image batch (N, 3, S, S), normalised as `preprocess` -> per-count scores (N, K) whose
    softmax is the probability of each count (every head). With `aux`, extra outputs of the
    backbone (the auxiliary training targets, `bincount.preprocess.AUX_TARGETS`) never reach
    the scores.

    Its arguments are the model config's `net` node (`conf/model/*.yaml`, `model.net.*`), the one
    place a network setting is written besides this signature: `config` records them, and
    checkpoints keep that record (`hyper_parameters["net"]`) to build the net again
    (`from_checkpoint`)."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        counts: list[int] = (1, 2, 3, 4, 5),
        pretrained: bool = True,
        weights: str | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        head_dropout: float = 0.0,
        channels_last: bool = True,
        head: str = "classify",
        tta: bool | str = False,
        aux: bool = False,
        prior: str = "train",
        train_counts: list[int] | None = None,
        val_shift: list[float] | None = None,
    ):
        # Every argument, as given (a checkpoint's hyper_parameters["net"]): nothing to list.
        config = {k: _plain(v) for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        self.config = config
        self.backbone_name = backbone
        self.counts = [int(c) for c in counts]
        self.channels_last = channels_last
        self.tta = tta
        self.head_dropout = head_dropout
        self.aux_targets = AUX_TARGETS if aux else ()
        self.n_aux = len(self.aux_targets)
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
        # The network's side of the preprocessing (timm's pretrained_cfg): the data module
        # joins it with the image size and resize (bincount.preprocess.resolve).
        self.data_config = {
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "aux_targets": self.aux_targets,
        }
        # The whole spec, once resolved: given by the data at training (`use_data`), read back
        # from the checkpoint at inference; saved in every checkpoint.
        self.preprocess: dict | None = None
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.prior = prior
        # Not in the state_dict (checkpoint keys stay net.* and head.*): rebuilt from the
        # training split's counts, which checkpoints keep in their hyper_parameters.
        self.register_buffer("log_prior_shift", torch.zeros(len(self.counts)), persistent=False)
        self.register_buffer("log_val_shift", torch.zeros(len(self.counts)), persistent=False)
        self.train_counts: list[int] | None = None
        self.set_train_counts(train_counts)
        self.val_shift: list[float] | None = None
        self.set_val_shift(val_shift)

    def set_val_shift(self, shift: list[float] | None) -> None:
        """prior=balanced: the per-count shift fitted on validation (`bincount.models.shift`),
        added after the training frequencies are divided out; kept in the net's record."""
        if shift is not None:
            shift = [float(x) for x in shift]
            if len(shift) != len(self.counts):
                raise BincountError(f"val_shift={shift}: need one number per count {self.counts}")
        self.val_shift = shift
        self.config["val_shift"] = shift
        self.log_val_shift.copy_(torch.tensor(shift or [0.0] * len(self.counts)))

    def set_train_counts(self, train_counts: list[int] | None) -> None:
        """How many training photos each count has; with prior=uniform, their frequencies are
        divided out of every answer (post-hoc logit adjustment: log p - log freq, renormalised)."""
        if train_counts is None:
            self.train_counts = None
            self.config["train_counts"] = None
            self.log_prior_shift.zero_()
            return
        train_counts = [int(n) for n in train_counts]
        if len(train_counts) != len(self.counts) or min(train_counts) < 0:
            raise BincountError(
                f"train_counts={train_counts}: need one count of photos >= 0 per count "
                f"{self.counts}"
            )
        self.train_counts = train_counts
        self.config["train_counts"] = train_counts
        if self.prior in ("uniform", "balanced"):
            freq = torch.tensor(train_counts, dtype=torch.float64).clamp_min(1.0)
            shift = -(freq / freq.sum()).log()
            self.log_prior_shift.copy_((shift - shift.mean()).to(self.log_prior_shift))

    def scores(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's per-count log-probabilities from its raw input, under `prior`."""
        return self._under_prior(self.head(raw))

    def _under_prior(self, log_probs: torch.Tensor) -> torch.Tensor:
        if self.prior == "train":
            return log_probs
        shift = self.log_prior_shift
        if self.prior == "balanced":
            shift = shift + self.log_val_shift
        return (log_probs.float() + shift).log_softmax(1)

    @classmethod
    def from_checkpoint(cls, hparams: dict, **overrides) -> CountNet:
        """The net a checkpoint's hyper_parameters describe: its `net` record, or (checkpoints
        from before issue 25) CountModule's flat arguments, whose `aux_weight > 0` meant the
        auxiliary outputs and whose `image_size` and `resize` the `preprocess` also holds.
        Settings a checkpoint lacks take this signature's defaults, as Lightning's loading does."""
        if isinstance(hparams.get("net"), dict):
            kwargs = dict(hparams["net"])
        else:
            own = inspect.signature(cls).parameters
            kwargs = {k: v for k, v in hparams.items() if k in own}
            kwargs["aux"] = bool(hparams.get("aux_weight"))
        net = cls(**{**kwargs, **overrides})
        pre = hparams.get("preprocess")
        if not isinstance(pre, dict):  # none stored: the size and resize it was trained at
            pre = preprocess.resolve(
                net.data_config, hparams.get("image_size", 224), hparams.get("resize", "letterbox")
            )
        net.preprocess = dict(pre)
        return net

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters()) + list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's outputs: the head's raw input, then the auxiliary outputs (if any)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.net(x)
        if self.training and self.head_dropout:  # on the head's input only
            n = self.head.n_outputs
            out = torch.cat([nn.functional.dropout(out[:, :n], self.head_dropout), out[:, n:]], 1)
        return out

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw input (the auxiliary outputs, if any, left out)."""
        return self.outputs(x)[:, : self.head.n_outputs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-count scores whose softmax is the probability of each count (every head)."""
        views = TTA_VIEWS.get(self.tta or False)
        if views is None:
            raise BincountError(
                f"model.net.tta={self.tta!r}: use false, flips (or true) or dihedral"
            )
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
