"""`bincount orders` and `bincount verify` (bincount.verify.check) on the session's trained,
calibrated run: both verdicts printed, the answer key read only to score."""

from __future__ import annotations

import json


def test_orders_then_verify_prints_both_verdicts_and_ignores_the_truth(
    served_run, tmp_path, bincount
):
    stream = tmp_path / "orders.jsonl"
    proc = bincount("orders", served_run, "--mismatch-rate", "0.5", "-o", stream)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert "test orders" in out and (tmp_path / "orders.truth.jsonl").is_file()
    n = len(stream.read_text().splitlines())
    verdicts = tmp_path / "verdicts.jsonl"
    proc = bincount("verify", served_run, stream, "-o", verdicts)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert "| photo-only |" in out and "| order-aware |" in out
    rows = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert len(rows) == n
    assert {r["verdict"] for r in rows} <= {"match", "mismatch", "unsure"}
    assert all(0.0 <= r["p_match"] <= 1.0 for r in rows)
    # a different answer key changes the score, never the verdicts
    truth = tmp_path / "orders.truth.jsonl"
    flipped = [json.loads(line) | {"wrong": True} for line in truth.read_text().splitlines()]
    truth.write_text("".join(json.dumps(t) + "\n" for t in flipped))
    again = tmp_path / "again.jsonl"
    proc = bincount("verify", served_run, stream, "-o", again)
    code, out2, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert again.read_text() == verdicts.read_text()
    assert f"{n} orders, {n} wrong" in out2


def test_verify_needs_a_calibrated_order_verifier(served_run, tmp_path, bincount):
    stream = tmp_path / "orders.jsonl"
    assert bincount("orders", served_run, "-o", stream).returncode == 0
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "checkpoints/best.ckpt"):
        (run / name).write_bytes((served_run / name).read_bytes())
    proc = bincount("verify", run, stream)
    code, err = proc.returncode, proc.stderr
    assert code == 2 and "bincount calibrate" in err and "Traceback" not in err
