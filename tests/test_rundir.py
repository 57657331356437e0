"""bincount.rundir: the run folder's names, readers and writers; torch-free."""

from __future__ import annotations

import subprocess
import sys

from omegaconf import OmegaConf

from bincount import rundir


def test_names_readers_and_writers(tmp_path):
    run = tmp_path / "run"
    assert rundir.read_config(run) is None and rundir.read_metrics(run) is None
    assert not rundir.is_run(run)
    rundir.write_config(run, OmegaConf.create({"lr": 0.1, "x": "${lr}"}))
    rundir.write_metrics(run, {"objective": {"name": "val/acc", "value": 0.5}})
    assert (run / "config.yaml").is_file() and rundir.is_run(run)
    assert rundir.read_config(run) == {"lr": 0.1, "x": 0.1}  # written resolved
    assert rundir.read_metrics(run)["objective"]["value"] == 0.5
    assert rundir.best_checkpoint(run) == run / "checkpoints" / "best.ckpt"
    assert rundir.last_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    assert rundir.member_dir(run, "a") == run / "members" / "a"
    assert rundir.eval_dir(run, "val") == run / "eval" / "val"
    assert rundir.calibration_path(run) == run / "calibration.json"


def test_rundir_imports_no_torch():
    code = "import sys, bincount.rundir\nassert 'torch' not in sys.modules\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
