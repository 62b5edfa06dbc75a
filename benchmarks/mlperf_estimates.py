"""Board estimates against published MLPerf Tiny latencies: how close, and how sure?

For every MLPerf Tiny reference model in ``../shared/mlperf_tiny/`` (or
``$SWEEP_MLPERF_TINY``), profiles it exactly as ``sweep-profile model.tflite
target=cortex_m4`` does (the target composed from conf/, tflite-micro on the
host, the Cortex-M4F build of TFLM + CMSIS-NN emulated, the target's calibrated
CPI) and prints:

1. estimated vs published latency on the same CPU and clock (Cortex-M4F @ 120 MHz,
   the NUCLEO-L4R5ZI rows), with the error in percent, for every published row;
2. the leave-one-out check: the CPI fitted on one model predicts the other;
3. the judged band: each estimate (and each leave-one-out prediction) against the
   published TFLM/CMSIS-NN-based band (microTVM + CMSIS-NN to TFLM 2.3.1 +
   CMSIS-NN) widened by 25 %, and whether the estimates order the models as the
   published figures do;
4. cross-checks the calibration never saw: TFLM + CMSIS-NN on a Cortex-M33 @ 200 MHz
   (with the Cortex-M4F counts: a different core), the energy of the v0.5 reference,
   and with ``--cortex-m7`` the Cortex-M7 build against the own-kernel floors;
5. whether the instruction counts still equal the ones the calibration was fitted on
   (a new TFLM or compiler changes them: then refit, the script says how).

    SWEEP_FIRMWARE_CACHE=outputs/cache/firmware .venv/bin/python benchmarks/mlperf_estimates.py
    ... benchmarks/mlperf_estimates.py --cortex-m7      # + the Cortex-M7 floor check

About 40 s for both models on the Cortex-M4F once its library is built (minutes, once).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from sweep.runtimes.cortex_m import calibration as cal

ROOT = Path(__file__).resolve().parents[1]
MLPERF = Path(os.environ.get("SWEEP_MLPERF_TINY", ROOT.parent / "shared" / "mlperf_tiny"))
WIDEN = 0.25
"""The judged tolerance: the published band widened by 25 % on each side."""


def _profile(path: Path, overrides: list[str]):
    from sweep.cli.sweep_profile import compose_target, profile

    board, _ = compose_target(overrides)
    found = profile(path, board, images=1)
    if "mcu_instructions" not in found.metrics:
        raise SystemExit(f"{path.name} on {board.name}: not emulated: {found.emulation_note}")
    return board, found


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], numeric_from: int) -> None:
    print("| " + " | ".join(header) + " |")
    print(
        "| " + " | ".join("---" if i < numeric_from else "---:" for i in range(len(header))) + " |"
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def _pct(estimate: float, published: float) -> str:
    return f"{100 * (estimate / published - 1):+.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cortex-m7", action="store_true", help="also the Cortex-M7 floor check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sweep").setLevel(logging.ERROR)

    models = {m: MLPERF / f for m, f in cal.MODELS.items() if (MLPERF / f).exists()}
    for m in cal.MODELS.keys() - models.keys():
        print(
            f"skipped {m}: {MLPERF / cal.MODELS[m]} not found (set SWEEP_MLPERF_TINY)",
            file=sys.stderr,
        )
    if not models:
        return 1

    measured: dict[str, dict[str, int]] = {"cortex-m4f": {}}
    estimates: dict[str, float] = {}
    board = None
    for m, path in models.items():
        board, found = _profile(path, ["target=cortex_m4"])
        measured["cortex-m4f"][m] = int(found.metrics["mcu_instructions"])
        estimates[m] = found.metrics["mcu_est_latency_ms"]
        print(
            f"{m}: {measured['cortex-m4f'][m]:,} instructions, {estimates[m]:.1f} ms "
            f"on {board.name}",
            file=sys.stderr,
            flush=True,
        )
    cpi, clock = board.cycles_per_instruction, board.clock_mhz
    counts = measured["cortex-m4f"]

    source = cal.calibrate(board.cpu).source
    print(f"\nTarget `cortex_m4`: {board.cpu} @ {clock:g} MHz, CPI {cpi:.3f} ({source}).\n")
    print("### Estimated vs published latency, Cortex-M4F @ 120 MHz (NUCLEO-L4R5ZI)\n")
    rows = []
    for row in cal.PUBLISHED:
        if row.cpu != "cortex-m4f":
            continue
        role = {cal.CALIBRATION_ROW: "fitted", cal.UPPER_ROW: "band's slow edge"}.get(
            row.key, "floor (own kernels)" if row.kind == "own_kernels" else ""
        )
        for m in models:
            est = cal.estimate_ms(counts[m], cpi, row.clock_mhz)
            rows.append(
                (
                    m,
                    f"{row.round} {row.system.split(' / ')[0]}",
                    row.software,
                    role,
                    f"{counts[m]:,}",
                    f"{row.latency_ms[m]:.1f}",
                    f"{est:.1f}",
                    _pct(est, row.latency_ms[m]),
                )
            )
    _table(
        (
            "model",
            "published",
            "software",
            "role",
            "instructions",
            "published ms",
            "estimate ms",
            "error %",
        ),
        rows,
        4,
    )

    print("### Leave-one-out: CPI fitted on one model, the other predicted\n")
    rows = []
    for key in (cal.CALIBRATION_ROW, cal.UPPER_ROW):
        row = cal.ROWS[key]
        for held_out in models:
            others = tuple(o for o in models if o != held_out)
            if not others:
                continue
            fitted = cal.fit_cpi(row, counts, others)
            est = cal.estimate_ms(counts[held_out], fitted, row.clock_mhz)
            rows.append(
                (
                    row.label,
                    "+".join(others),
                    f"{fitted:.3f}",
                    held_out,
                    f"{row.latency_ms[held_out]:.1f}",
                    f"{est:.1f}",
                    _pct(est, row.latency_ms[held_out]),
                )
            )
    _table(
        ("row", "fitted on", "CPI", "predicts", "published ms", "estimate ms", "error %"), rows, 2
    )

    print(
        f"### The judged band: microTVM + CMSIS-NN .. TFLM 2.3.1 + CMSIS-NN, widened by "
        f"{100 * WIDEN:.0f} %\n"
    )
    fast, slow = cal.ROWS[cal.CALIBRATION_ROW], cal.ROWS[cal.UPPER_ROW]
    rows, ok = [], True
    for m in models:
        low, high = fast.latency_ms[m] * (1 - WIDEN), slow.latency_ms[m] * (1 + WIDEN)
        others = tuple(o for o in models if o != m)
        loo = (
            cal.estimate_ms(counts[m], cal.fit_cpi(fast, counts, others), clock) if others else None
        )
        inside = [low <= e <= high for e in (estimates[m], loo) if e is not None]
        ok &= all(inside)
        rows.append(
            (
                m,
                f"{fast.latency_ms[m]:.1f}-{slow.latency_ms[m]:.1f}",
                f"{low:.1f}-{high:.1f}",
                f"{estimates[m]:.1f}",
                "-" if loo is None else f"{loo:.1f}",
                "yes" if all(inside) else "NO",
            )
        )
    _table(
        ("model", "published band ms", "widened ms", "estimate ms", "leave-one-out ms", "inside"),
        rows,
        1,
    )
    order = sorted(models, key=estimates.get)
    same = all(
        sorted(models, key=r.latency_ms.get) == order
        for r in cal.PUBLISHED
        if r.cpu == "cortex-m4f"
    )
    print(
        f"Order by estimate: {' < '.join(order)}; every published Cortex-M4F row orders them "
        f"the same: {'yes' if same else 'NO'}. All inside the widened band: "
        f"{'yes' if ok else 'NO'}.\n"
    )

    print("### Cross-checks the calibration never saw\n")
    rows = []
    m33 = cal.ROWS["v0.7-renesas"]
    for m in models:
        est = cal.estimate_ms(counts[m], cpi, m33.clock_mhz)
        rows.append(
            (
                m,
                f"{m33.label}, {m33.core} @ {m33.clock_mhz:g} MHz (Cortex-M4F counts)",
                f"{m33.latency_ms[m]:.1f} ms",
                f"{est:.1f} ms",
                _pct(est, m33.latency_ms[m]),
            )
        )
    if board.active_power_mw:
        for m in models:
            published = slow.energy_uj[m]
            est = (
                cal.estimate_ms(counts[m], cal.fit_cpi(slow, counts), clock) * board.active_power_mw
            )
            rows.append(
                (
                    m,
                    f"energy: {slow.label} at its own CPI × {board.active_power_mw:g} mW",
                    f"{published:,.0f} µJ",
                    f"{est:,.0f} µJ",
                    _pct(est, published),
                )
            )
    if args.cortex_m7:
        for row in cal.PUBLISHED:
            if row.cpu != "cortex-m7":
                continue
            overrides = ["target=stm32f746_disco", f"target.clock_mhz={row.clock_mhz:g}"]
            for m, path in models.items():
                m7, found = _profile(path, overrides)
                est = found.metrics["mcu_est_latency_ms"]
                rows.append(
                    (
                        m,
                        f"{row.label} @ {row.clock_mhz:g} MHz: a floor (own kernels), "
                        f"cortex-m7 CPI {m7.cycles_per_instruction:.3f} is an assumption",
                        f"{row.latency_ms[m]:.1f} ms",
                        f"{est:.1f} ms",
                        f"{est / row.latency_ms[m]:.1f}× the floor",
                    )
                )
    _table(("model", "published", "published", "estimate", "error %"), rows, 2)

    drift = {m: (counts[m], cal.EMULATED_INSTRUCTIONS["cortex-m4f"].get(m)) for m in models}
    if all(now == then for now, then in drift.values()):
        print(
            "Instruction counts equal the ones the calibration was fitted on "
            "(sweep/runtimes/cortex_m/calibration.py)."
        )
    else:
        refit = cal.fit_cpi(fast, counts)
        print(
            f"WARNING: instruction counts differ from the calibration's {drift}: update "
            f"EMULATED_INSTRUCTIONS in calibration.py and set cpi: {refit:.3f} in the "
            "cortex-m4f targets (and the boards that borrow its figure)."
        )
    held_out = [
        abs(cal.estimate_ms(counts[m], cpi, m33.clock_mhz) / m33.latency_ms[m] - 1) for m in models
    ]
    loo = cal.calibrate("cortex-m4f").leave_one_out_pct.values()
    print(
        f"\nExpected error of a Cortex-M4F estimate: {max(abs(e) for e in loo):.1f} % for a "
        f"model the fit never saw (leave-one-out, same row); {100 * max(held_out):.0f} % "
        f"against the TFLM + CMSIS-NN row the fit never saw (Cortex-M33); the published "
        f"band's slow edge (TFLM 2.3.1, 2020) is {cal.fit_cpi(slow, counts) / cpi:.2f}× the "
        "estimate."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
