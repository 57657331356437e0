"""One training per run folder: a lock file `<run>/.run.lock` (pid, host, start time) held
with `flock` for the life of the process, taken before anything is written into the folder.

- A second `python train.py` into a folder in use is refused at once (BincountError naming
  the other process), not after it has overwritten the first run's files.
- The lock dies with its process (flock), so a crash never leaves the folder locked; a lock
  file whose pid is gone is a stale one, taken over with a log line.
- A folder that holds a finished run (its metrics.json) is reused only to resume it
  (`ckpt_path=`, or an ensemble run again: it reuses its finished members); otherwise a new
  run there is refused with the fix. An unfinished one (a
  crash: config.yaml, no metrics.json) is trained into afresh, with a warning.

`python train.py` takes the lock from a Hydra callback (`RunLock`, conf/hydra/default.yaml)
before Hydra writes `.hydra/` or its log into the folder; `bincount.training.runner.train` takes it
again (the same process: a no-op) for runs that do not come through Hydra's main.
The processes of one DDP training share its folder: only the first of a host (local rank 0,
or no rank: a plain run) takes the lock; the others, which Lightning or torchrun start with
LOCAL_RANK set, run under it. Torch-free.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from pathlib import Path

from bincount import rundir
from bincount.errors import BincountError

log = logging.getLogger(__name__)

LOCK = ".run.lock"
CONFIG, METRICS = rundir.CONFIG, rundir.METRICS  # a run's files: started, finished

# folder (resolved) -> open lock file descriptor, for the locks this process holds
_held: dict[Path, int] = {}


def _another_rank() -> bool:
    """A DDP process other than the host's first (Lightning's launcher and torchrun set
    LOCAL_RANK in every process they start): it trains under its first process's lock."""
    return os.environ.get("LOCAL_RANK", "0") not in ("", "0")


def lock_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / LOCK


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder(info: dict) -> str:
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
    )


def _refuse(folder: Path, info: dict) -> BincountError:
    return BincountError(
        f"run folder {folder} is in use by {_holder(info)} ({lock_path(folder)}): "
        "wait for it to finish, or train into another folder (e.g. leave hydra.run.dir unset "
        "for a new one)"
    )


def acquire(folder: str | os.PathLike, resume: bool = False) -> Path:
    """Lock `folder` for this process (created if needed); BincountError if another process
    holds it, or if it holds a run already and `resume` is false. Re-entrant."""
    folder = Path(os.path.abspath(folder))
    if folder in _held or _another_rank():
        return folder
    if folder.exists() and not folder.is_dir():
        raise BincountError(f"run folder {folder} is a file: choose a folder for hydra.run.dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(folder)
    except OSError as e:
        raise BincountError(
            f"cannot lock run folder {folder} ({e.strerror or e}): choose a writable "
            "folder for hydra.run.dir (or paths.log_dir)"
        ) from None
    try:
        previous = _read(fd)
        same_host = previous.get("host") == socket.gethostname()
        pid = previous.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and same_host and _pid_alive(pid):
            # flock held by nobody, yet the recorded process lives (a filesystem without
            # flock, or a process that dropped it): do not take its folder
            raise _refuse(folder, previous)
        if previous and pid != os.getpid():
            log.warning("run folder %s: took over the stale lock of %s", folder, _holder(previous))
        if (folder / METRICS).is_file() and not resume:
            raise BincountError(
                f"run folder {folder} already holds a finished run ({METRICS}): train into a "
                "new folder (leave hydra.run.dir unset), or resume this one with "
                f"ckpt_path={rundir.last_checkpoint(folder)}"
            )
        if (folder / CONFIG).is_file() and not resume:
            log.warning(
                "run folder %s holds an unfinished run (no %s): training afresh into it "
                "(ckpt_path=%s would resume it)",
                folder,
                METRICS,
                rundir.last_checkpoint(folder),
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    if not _held:  # an exit without on_run_end (sys.exit, an error): drop it then
        atexit.unregister(release_all)
        atexit.register(release_all)
    _held[folder] = fd
    return folder


def _open_locked(folder: Path) -> int:
    """The lock file, open and flock-ed (BincountError naming the holder if it is taken)."""
    path = lock_path(folder)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            info = _read(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _refuse(folder, info) from None
            raise
        # the holder may have removed the file between our open and our flock: retry on the
        # file that is there now
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def release(folder: str | os.PathLike) -> None:
    """Drop this process's lock of `folder` (and its lock file); nothing if it holds none."""
    folder = Path(os.path.abspath(folder))
    fd = _held.pop(folder, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        lock_path(folder).unlink(missing_ok=True)
    os.close(fd)


def release_all() -> None:
    for folder in list(_held):
        release(folder)


def holds(folder: str | os.PathLike) -> bool:
    return Path(os.path.abspath(folder)) in _held


def check_free(folder: str | os.PathLike) -> None:
    """BincountError if another process holds `folder`'s lock; takes nothing. `train.py`
    calls it on a `hydra.run.dir=` override before Hydra loads: the refusal in a blink."""
    if _another_rank():
        return
    path = lock_path(os.path.abspath(folder))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or unreadable: acquire() will say)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _refuse(Path(os.path.abspath(folder)), _read(fd)) from None
    finally:
        os.close(fd)


def check_argv(argv: list[str]) -> None:
    """`check_free` on the last `hydra.run.dir=PATH` of a command line (a literal path)."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    if given and "${" not in given[-1] and given[-1]:
        check_free(given[-1])


class RunLock:
    """Hydra callback (conf/hydra/default.yaml `hydra.callbacks`): lock `hydra.run.dir` before
    Hydra writes into it (a single run); a multirun's jobs are locked by `train()` in their own
    new subfolders. Hydra calls every hook of a callback: the others do nothing."""

    def on_run_start(self, config, **kwargs) -> None:
        import sys

        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        HydraConfig.instance().set_config(config)  # ${hydra:...} in run.dir resolves
        folder = OmegaConf.select(config, "hydra.run.dir")
        resume = bool(OmegaConf.select(config, "ckpt_path", default=None))
        # an ensemble run again into its folder reuses its finished members by design
        # (bincount.training.ensemble): an explicit rerun, not a silent reuse
        runner = str(OmegaConf.select(config, "runner._target_", default="") or "")
        resume = resume or runner.endswith("training.ensemble.run")
        try:
            acquire(str(folder), resume=resume)
        except BincountError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def on_run_end(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        release(str(OmegaConf.select(config, "hydra.run.dir")))

    def on_multirun_start(self, config, **kwargs) -> None:
        pass

    def on_multirun_end(self, config, **kwargs) -> None:
        pass

    def on_job_start(self, config, **kwargs) -> None:
        pass

    def on_job_end(self, config, **kwargs) -> None:
        pass
