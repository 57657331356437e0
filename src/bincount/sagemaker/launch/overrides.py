"""Which of the launcher's command-line overrides travel to the job, and how they survive the trip.

`python launch_sagemaker.py model=resnet50 +trainer.val_check_interval=0.5 sagemaker.spot=true`
sends ONE hyperparameter, `bincount_overrides`, holding the training overrides verbatim, in order:
a JSON list of strings, itself JSON-encoded as a string (below). The container decodes it and
composes conf/train.yaml with them, so the job trains exactly what `python train.py ...` would.
The launcher's own settings (sagemaker, sweep, dry_run) and what the container decides itself
(data.source, paths, hydra) stay here.

Why one encoded hyperparameter: AWS's container code turns every hyperparameter key into
`export SM_HP_<KEY>='<value>'` in a shell file (sagemaker-train's environment.py), so a Hydra key
(`trainer.max_epochs`, `+a.b`, `~a`) is not a valid name there, and a value holding `'` ends the
quoting. Every reader of hyperparameters (environment.py, the SDK's drivers, the DLC's
sagemaker-training toolkit) JSON-decodes a value once and passes strings on as they are: the
value is therefore a JSON *string* whose text is the JSON list, with `'` written `\\u0027`, so
after that one decoding it is still one shell-safe string, which the bridge decodes.
Tuned keys (a tuning job's search space, e.g. `lr`, `batch_size`) are plain hyperparameters the
tuner sets; a dotted key travels as `data__image_size` (see `tuned_name`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from bincount.errors import BincountError

# Hydra keys (and their children) the launcher consumes; never sent to the job.
LAUNCHER_KEYS = ("sagemaker", "sweep", "dry_run", "hydra", "data.source", "paths", "task_name")
OVERRIDES_KEY = "bincount_overrides"
# SageMaker's limit on one hyperparameter value.
MAX_VALUE_CHARS = 2500
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Split:
    training: list[str] = field(default_factory=list)  # the overrides for the job, verbatim
    keys: list[str] = field(default_factory=list)  # their Hydra keys (no +/~ prefix), same order
    launcher: list[str] = field(default_factory=list)

    def hyperparameters(self, drop_keys=()) -> dict[str, str]:
        """The job's hyperparameters: {bincount_overrides: ...}, minus overrides of drop_keys."""
        kept = [o for o, k in zip(self.training, self.keys, strict=True) if k not in drop_keys]
        return {OVERRIDES_KEY: encode(kept)} if kept else {}


def _is_under(key: str, roots: tuple[str, ...]) -> bool:
    return any(key == r or key.startswith(r + ".") for r in roots)


def split(overrides: list[str]) -> Split:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise BincountError(f"cannot parse the overrides: {e}") from None
    out = Split()
    for o in parsed:
        key = o.key_or_group
        if o.is_sweep_override():
            raise BincountError(
                f"{o.input_line!r} is a sweep over values: a SageMaker job trains one config; "
                "for a search use +sweep=hpo (the ranges live in conf/sweep/hpo.yaml)"
            )
        if _is_under(key, LAUNCHER_KEYS):
            out.launcher.append(o.input_line)
            continue
        if key == "ckpt_path":
            raise BincountError(
                "ckpt_path points at a file on this machine, which a SageMaker job cannot read: "
                "a spot job resumes from its own checkpoints (sagemaker.spot=true); drop ckpt_path"
            )
        out.training.append(o.input_line)
        out.keys.append(key)
    return out


def encode(overrides: list[str]) -> str:
    inner = json.dumps(list(overrides), ensure_ascii=True).replace("'", "\\u0027")
    value = json.dumps(inner)
    if len(value) > MAX_VALUE_CHARS:
        raise BincountError(
            f"the training overrides take {len(value)} characters once encoded, above "
            f"SageMaker's {MAX_VALUE_CHARS} for one hyperparameter: put them in a config file "
            "(e.g. conf/experiment/<name>.yaml) and launch experiment=<name>"
        )
    return value


def decode(value: str) -> list[str]:
    """The inverse of `encode`, after any number (0-2) of the JSON decodings on the way."""
    decoded: object = value
    for _ in range(3):
        if not isinstance(decoded, str):
            break
        try:
            decoded = json.loads(decoded)
        except json.JSONDecodeError:
            break
    if not isinstance(decoded, list) or not all(isinstance(o, str) for o in decoded):
        raise BincountError(
            f"hyperparameter {OVERRIDES_KEY}={value[:200]!r} is not a JSON list of overrides "
            "(it is written by launch_sagemaker.py; do not set it by hand)"
        )
    return decoded


def tuned_name(key: str) -> str:
    """The hyperparameter name of a tuned Hydra key: `lr` as is, `data.image_size` ->
    `data__image_size` (a valid shell name, as AWS's container code needs)."""
    name = key.replace(".", "__")
    if not _SHELL_NAME.fullmatch(name):
        raise BincountError(
            f"sweep.params.{key}: a tuned key must be letters, digits, `_` and `.` (it becomes "
            f"the hyperparameter {name!r})"
        )
    return name


def tuned_key(name: str) -> str:
    return name.replace("__", ".")


def to_overrides(hyperparameters: dict[str, str]) -> list[str]:
    """The job's overrides from its hyperparameters (SageMaker's own keys already dropped):
    the decoded `bincount_overrides` first, then each tuned key (which wins)."""
    out: list[str] = []
    for name, value in hyperparameters.items():
        if name == OVERRIDES_KEY:
            out = decode(value) + out
        else:
            out.append(f"{tuned_key(name)}={value}")
    return out
