"""Which of the launcher's command-line overrides travel to the job, as its hyperparameters.

`python launch_sagemaker.py model=resnet50 lr=0.01 sagemaker.spot=true` sends
{"model": "resnet50", "lr": "0.01"}: the training overrides, verbatim, keyed by Hydra key (with its
`+`/`++`/`~` prefix). The container turns each `--key value` back into `key=value` and composes
conf/train.yaml with them, so the job trains exactly what `python train.py model=resnet50 lr=0.01`
would. The launcher's own settings (sagemaker, sweep, dry_run) and what the container decides
itself (data.source, paths, hydra) stay here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bincount.errors import BincountError

# Hydra keys (and their children) the launcher consumes; never sent to the job.
LAUNCHER_KEYS = ("sagemaker", "sweep", "dry_run", "hydra", "data.source", "paths", "task_name")


@dataclass
class Split:
    hyperparameters: dict[str, str] = field(default_factory=dict)
    launcher: list[str] = field(default_factory=list)


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
        value = "" if o.is_delete() and "=" not in o.input_line else o.input_line.split("=", 1)[1]
        out.hyperparameters[o.get_key_element()] = value
    return out


def to_overrides(hyperparameters: dict[str, str]) -> list[str]:
    """The inverse of `split`: {"model": "resnet50", "~x": ""} -> ["model=resnet50", "~x"]."""
    return [k if k.startswith("~") and v == "" else f"{k}={v}" for k, v in hyperparameters.items()]
