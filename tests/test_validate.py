"""Bad numbers in `python train.py` overrides: one clear line and exit 2, before any training
(the check runs in a torch-free module from the Hydra main)."""

from __future__ import annotations

import pytest
from runner import run_train


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("lr=abc", "lr='abc' is not a number"),
        ("lr=-1", "lr=-1 must be above 0"),
        ("batch_size=-3", "batch_size=-3 must be at least 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be at least 1"),
        ("data.image_size=7", "data.image_size=7 must be at least 32"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 must be at least 0"),
        ("data.num_workers=two", "data.num_workers='two' is not a whole number"),
    ],
)
def test_a_bad_number_is_one_line_before_training(tmp_path, override, words):
    run = tmp_path / "run"
    proc = run_train(override, f"hydra.run.dir={run}", timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert words in lines[0] and "e.g." in lines[0]
    assert not (run / "config.yaml").exists()  # train() writes it first: it never started
