"""SageMaker's failure file: why the job failed, in the job's own record.

SageMaker shows the first 1024 characters of `/opt/ml/output/failure` as the job's
FailureReason (DescribeTrainingJob, the console, `bincount pull`). AWS's container code writes
it only when it does not exist yet (the SDK's drivers: `CalledProcessError ... exit status 1`;
the DLC's toolkit: `ExecuteUserScriptError`), so the entrypoint writes it first, with what a
reader needs: the exception's type and message (the innermost cause, not Hydra's wrapper), the
override that caused it where the message names its key, and the last frames.

The path is the one AWS's code gives the job: SM_OUTPUT_FAILURE (the SDK's `environment.py`)
or SM_OUTPUT_DIR/failure (both the SDK and the DLC's sagemaker-training set SM_OUTPUT_DIR).
Outside SageMaker neither is set and nothing is written.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from pathlib import Path

from bincount.errors import BincountError

MAX_CHARS = 1024  # what SageMaker keeps of the file
FRAMES = 3
# bincount's own code: the package's folder (not any path with "/bincount/" in it: a checkout
# named bincount holds its virtualenv's libraries too).
PACKAGE = Path(__file__).resolve().parents[2]
# bincount's thin wrapper of Hydra's instantiate (bincount.config.hydra): the frame that called it
# says more.
WRAPPERS = {PACKAGE / "config" / "hydra.py"}


def path(env: Mapping[str, str]) -> Path | None:
    if env.get("SM_OUTPUT_FAILURE"):
        return Path(env["SM_OUTPUT_FAILURE"])
    if env.get("SM_OUTPUT_DIR"):
        return Path(env["SM_OUTPUT_DIR"]) / "failure"
    return None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception: Hydra wraps a target's TypeError in InstantiationException."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def culprit(exc: BaseException, overrides: list[str]) -> str | None:
    """The override whose key the error names: a quoted name in the innermost error's message
    (`unexpected keyword argument 'bogus_arg'`) first, then Hydra's `full_key: trainer` of the
    wrappers. None when none matches."""
    root = root_cause(exc)
    chain = []
    e: BaseException | None = exc
    while e is not None and e is not root:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    for names in (
        set(re.findall(r"'([A-Za-z_][\w.]*)'", str(root))),
        set(re.findall(r"full_key: ([\w.]+)", "\n".join(chain))),
    ):
        for override in reversed(overrides):  # Hydra applies the last one: blame it first
            key = _key(override)
            if key in names or key.rsplit(".", 1)[-1] in names:
                return override
    return None


def _frame(f: traceback.FrameSummary) -> str:
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


def frames(exc: BaseException, n: int = FRAMES) -> list[str]:
    return [_frame(f) for f in traceback.extract_tb(exc.__traceback__)[-n:]]


def _ours(filename: str) -> bool:
    path = Path(filename).resolve()
    return path.is_relative_to(PACKAGE) and path not in WRAPPERS


def project_frame(exc: BaseException) -> str | None:
    """The last frame of bincount's own code on the way to the error (where it entered the
    library that raised), e.g. `fit.py:38 in _trainer`."""
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if _ours(f.filename)]
    return _frame(ours[-1]) if ours else None


def describe(exc: BaseException, overrides: list[str]) -> str:
    """The failure reason, most important first (SageMaker keeps 1024 characters)."""
    if isinstance(exc, BincountError):
        return f"bincount: {exc}"[:MAX_CHARS]
    root = root_cause(exc)
    first = f"{type(root).__name__}: {root}".strip()
    lines = [first.splitlines()[0] if first else type(root).__name__]
    cause = culprit(exc, overrides)
    if cause is not None:
        lines.append(f"caused by the override {cause}")
    where = frames(root) or frames(exc)
    entry = project_frame(exc)
    if entry and entry not in where:
        where.insert(0, entry)
    if where:
        lines.append("at " + " <- ".join(reversed(where)))
    if root is not exc:
        lines.append(f"(raised as {type(exc).__name__})")
    return "\n".join(lines)[:MAX_CHARS]


def write(exc: BaseException, overrides: list[str], env: Mapping[str, str]) -> Path | None:
    """Write the failure file (unless AWS's code or an earlier rank already did)."""
    target = path(env)
    if target is None or not target.parent.is_dir() or target.exists():
        return None
    target.write_text(describe(exc, overrides) + "\n")
    return target
