"""`bincount calibrate RUN`: temperature scaling and verdict thresholds on the val split."""

from __future__ import annotations


def register(sub) -> dict:
    p = sub.add_parser(
        "calibrate",
        help="fit temperature scaling and the verdict thresholds on a run's validation split",
        description="Fit a temperature on the run's validation split, choose the thresholds "
        "of the match/mismatch/unsure verdicts for the target precision (conf/serve.yaml "
        "verify:), and write <run>/calibration.json, which serve and predict then use.",
    )
    p.add_argument("run", metavar="MODEL", help="a run folder or a checkpoint (its best.ckpt)")
    p.add_argument("--target-precision", type=float, help="of mismatch flags (verify.*)")
    p.add_argument("--mismatch-rate", type=float, help="share of wrong orders assumed")
    return {"calibrate": p}


def run(args) -> int:
    from bincount.errors import BincountError
    from bincount.fileio import check_input
    from bincount.verify.calibration import calibrate

    check_input(args.run, "MODEL", folder_ok=True)
    verify = {}
    for key in ("target_precision", "mismatch_rate"):
        value = getattr(args, key)
        if value is not None:
            if not 0.0 < value < 1.0:
                raise BincountError(f"--{key.replace('_', '-')} {value} must be between 0 and 1")
            verify[key] = value
    result = calibrate(args.run, verify)
    v = result["validation"]
    t = result["thresholds"]
    print(
        f"calibrated on {result['images']} validation images: temperature "
        f"{result['temperature']:.3f}\n"
        f"  ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}   "
        f"NLL {result['nll_before']:.4f} -> {result['nll_after']:.4f}\n"
        f"  verdicts: mismatch if p(expected) < {_cut(t['mismatch_below'])}, "
        f"match if >= {_cut(t['match_at_least'])}, unsure between\n"
        f"  on validation orders ({result['verify']['mismatch_rate']:.0%} wrong, off by one): "
        f"mismatch precision {_pct(v['mismatch_precision'])}, recall "
        f"{_pct(v['mismatch_recall'])}, unsure {_pct(v['share_unsure'])}"
    )
    o = result.get("orders")
    if o:
        ov, ot = o["validation"], o["thresholds"]
        print(
            f"  order verifier ({o['fitted_on']['photos']} validation photos x "
            f"{o['fitted_on']['draws']} order streams): mismatch if P(right) < "
            f"{_cut(ot['mismatch_below'])}, match if >= {_cut(ot['match_at_least'])}; mismatch "
            f"precision {_pct(ov['mismatch_precision'])}, recall {_pct(ov['mismatch_recall'])}, "
            f"match precision {_pct(ov['match_precision'])}, unsure {_pct(ov['share_unsure'])}"
        )
    else:
        print("  no order verifier: the validation photos' metadata has too few line items")
    return 0


def _cut(t: float) -> str:
    """A threshold, or why it never applies (no cut reaches its target precision)."""
    if t <= 0.0 or t > 1.0:
        return f"{t:.0f} (never: no threshold reaches the target precision)"
    return f"{t:.4f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
