"""Board estimates per Cortex-M core against every published MLPerf Tiny row: how close, how sure?

The cycle model (``sweep.runtimes.cortex_m``: instruction mix x TRM timing table +
memory stall with one exposure per memory system) is fitted on kws and ic of three
boards (NUCLEO-L4R5ZI, EK-RA6M4, nRF5340-DK) and checked here. Printed, per core:

1. the fits: exposure per memory system, residuals, leave-one-out errors (the
   exposure fitted on one model predicts the other);
2. every estimate next to every published CMSIS-NN-based row of that core (fitted,
   band edge, or unseen), and an M33 board predicted from the *other* M33 board's
   exposure (what a new board described by one YAML gets);
3. energy: the same cycles at the board's power, against the published energy rows;
4. the Cortex-M7 and Cortex-M0+, which no CMSIS-NN row covers (timing model alone):
   their estimated cycles against the M4F's, next to what real boards running one
   engine on both cores show, and the Pico's published TFLM + CMSIS-NN person
   detection latency;
5. with ``--measure``: the instruction mixes emulated again (kws, ic, and the person
   detection model on the M4F and M0+), compared with ``measured.py`` (exact), plus
   the emulation time.

    .venv/bin/python benchmarks/mlperf_estimates.py              # arithmetic only, ~1 s
    SWEEP_FIRMWARE_CACHE=~/.cache/sweep/firmware \\
      .venv/bin/python benchmarks/mlperf_estimates.py --measure  # re-emulate (minutes)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from sweep.runtimes.cortex_m.estimate import estimate
from sweep.runtimes.cortex_m.fit import FIT_ROWS, all_fits, band_rows, fit_memory, mixes_for
from sweep.runtimes.cortex_m.measured import MEASURED_MIXES
from sweep.runtimes.cortex_m.memory import MemorySystem
from sweep.runtimes.cortex_m.published import (
    MODEL_FILES,
    OTHER_PUBLISHED,
    PUBLISHED,
    ROWS,
    SAME_ENGINE_PAIRS,
)
from sweep.runtimes.cortex_m.reference_boards import REFERENCE_BOARDS
from sweep.runtimes.cortex_m.timing import core_timing

ROOT = Path(__file__).resolve().parents[1]
MLPERF = Path(os.environ.get("SWEEP_MLPERF_TINY", ROOT.parent / "shared" / "mlperf_tiny"))
PERSON = "person_detect"
BOARD_POWER_MW = {"nucleo_l4r5zi": 41.5, "ek_ra6m4": 73.3}
"""Active power used for the energy check: the NUCLEO-L4R5ZI's as measured by the v0.5
reference (29,207 uJ / 704.2 ms at 1.8 V), the EK-RA6M4's as measured in its v0.7
energy run (72-75 mW at 3.0 V: no datasheet figure was found for it)."""


def _table(header: tuple[str, ...], rows: list[tuple], numeric_from: int) -> None:
    print("| " + " | ".join(header) + " |")
    rule = ("---" if i < numeric_from else "---:" for i in range(len(header)))
    print("| " + " | ".join(rule) + " |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def _pct(value: float, reference: float) -> str:
    return f"{100 * (value / reference - 1):+.1f}"


def fits_section() -> None:
    print("### The fitted constant of each memory system (exposure), on kws + ic\n")
    rows = []
    for memory, fit in all_fits().items():
        board = REFERENCE_BOARDS[memory]
        rows.append(
            (
                memory,
                fit.cpu,
                ROWS[fit.row].label,
                f"{board.wait_states:g} WS, {board.accelerator}",
                f"{fit.exposure:.3f}",
                ", ".join(f"{m} {e:+.1f}%" for m, e in fit.residuals_pct.items()),
                ", ".join(f"{m} {e:+.1f}%" for m, e in fit.leave_one_out_pct.items()),
            )
        )
    _table(
        ("memory system", "core", "fitted on", "datasheet", "exposure", "residuals",
         "leave-one-out"),
        rows,
        4,
    )  # fmt: skip


def _estimate_row(model: str, row, memory: MemorySystem, role: str) -> tuple:
    mix = mixes_for(row.cpu)[model]
    found = estimate(mix, row.cpu, memory, row.clock_mhz)
    published = row.latency_ms[model]
    return (
        row.core,
        model,
        f"{row.round} {row.system}",
        row.software,
        role,
        f"{published:.1f}",
        f"{found.ms:.1f}",
        f"{found.band_ms[0]:.1f}-{found.band_ms[1]:.1f}",
        _pct(found.ms, published),
        "yes" if found.calibrated else "no",
    )


def rows_section() -> None:
    print("### Every estimate next to every published CMSIS-NN-based row\n")
    rows = []
    for row in PUBLISHED:
        if row.kind == "own_kernels" or row.cpu not in MEASURED_MIXES:
            continue
        memory = REFERENCE_BOARDS[row.board]
        fitted = FIT_ROWS.get(row.board)
        role = (
            "fitted" if row.key == fitted
            else "band edge" if row in band_rows(row.board, fitted) and row.kind == "tflm_cmsis_nn"
            else "never fitted"
        )  # fmt: skip
        for model in row.latency_ms:
            if model in mixes_for(row.cpu):
                rows.append(_estimate_row(model, row, memory, role))
    # a board the fit never saw: each M33 board predicted from the other one's exposure
    for memory_name, other in (("ek_ra6m4", "nrf5340_dk"), ("nrf5340_dk", "ek_ra6m4")):
        row = ROWS[FIT_ROWS[memory_name]]
        facts = REFERENCE_BOARDS[memory_name].__dict__
        unseen = MemorySystem(**{**facts, "name": f"new_{memory_name}", "calibration": other})
        for model in row.latency_ms:
            rows.append(_estimate_row(model, row, unseen, f"as a new board ({other}'s exposure)"))
    _table(
        ("core", "model", "published", "software", "role", "published ms", "estimate ms",
         "band ms", "error %", "calibrated"),
        rows,
        5,
    )  # fmt: skip


def energy_section() -> None:
    print("### Energy: the same cycles at the board's active power\n")
    rows = []
    for row in PUBLISHED:
        if not row.energy_uj or row.kind == "own_kernels" or row.board not in BOARD_POWER_MW:
            continue
        power = BOARD_POWER_MW[row.board]
        for model, published in row.energy_uj.items():
            found = estimate(
                mixes_for(row.cpu)[model], row.cpu, REFERENCE_BOARDS[row.board], row.clock_mhz,
                power,
            )  # fmt: skip
            low, high = found.band_energy_uj
            rows.append(
                (
                    model,
                    row.label,
                    f"{power:g} mW",
                    f"{published:,.0f}",
                    f"{found.energy_uj:,.0f}",
                    f"{low:,.0f}-{high:,.0f}",
                    _pct(found.energy_uj, published),
                    "yes" if low <= published <= high else "NO",
                )
            )
    _table(
        ("model", "published row", "power", "published µJ", "estimate µJ", "band µJ",
         "error %", "in band"),
        rows,
        2,
    )  # fmt: skip


def _cycles(cpu: str, board: str, clock_mhz: float, model: str) -> tuple[float, float]:
    """(estimated board cycles, core-only cycles) of ``model`` on ``cpu`` at ``board``."""
    mix = mixes_for(cpu)[model]
    found = estimate(mix, cpu, REFERENCE_BOARDS[board], clock_mhz)
    return found.cycles, core_timing(cpu).cycles(mix)


def cores_section() -> None:
    print("### Cortex-M7 and Cortex-M0+ against the M4F (no CMSIS-NN row: timing model alone)\n")
    print(
        "Same engine on both cores, published cycles per inference (ms x MHz) of the other core "
        "over the NUCLEO-L4R5ZI's, next to the same ratio of this model's estimates (M4F "
        "calibrated on the L4R5ZI; the other core on the other row's board).\n"
    )
    rows = []
    for m4f_key, other_key in SAME_ENGINE_PAIRS:
        m4f, other = ROWS[m4f_key], ROWS[other_key]
        if other.cpu not in MEASURED_MIXES:
            continue
        for model in ("kws", "ic"):
            published = (other.latency_ms[model] * other.clock_mhz) / (
                m4f.latency_ms[model] * m4f.clock_mhz
            )
            ours, ours_core = _cycles(other.cpu, other.board, other.clock_mhz, model)
            base, base_core = _cycles("cortex-m4f", m4f.board, m4f.clock_mhz, model)
            rows.append(
                (
                    model,
                    f"{other.core} ({other.system.split(' / ')[1]} @ {other.clock_mhz:g})",
                    other.software,
                    f"{published:.2f}",
                    f"{ours / base:.2f}",
                    f"{ours_core / base_core:.2f}",
                )
            )
    for model in ("kws", "ic"):
        for cpu, board, clock in (
            ("cortex-m7", "disco_f746ng", 216),
            ("cortex-m0plus", "rpi_pico", 125),
        ):
            if cpu in MEASURED_MIXES:
                ours, core = _cycles(cpu, board, clock, model)
                base, base_core = _cycles("cortex-m4f", "nucleo_l4r5zi", 120, model)
                rows.append(
                    (model, f"{cpu} ({board})", "TFLM + CMSIS-NN (this build)", "-",
                     f"{ours / base:.2f}", f"{core / base_core:.2f}")
                )  # fmt: skip
    _table(
        ("model", "other core (board @ MHz)", "engine on both", "published ratio",
         "estimated ratio", "core-only ratio"),
        rows,
        3,
    )  # fmt: skip
    rows = []
    for item in OTHER_PUBLISHED:
        mixes = mixes_for(item.cpu)
        if PERSON not in mixes:
            continue
        found = estimate(mixes[PERSON], item.cpu, REFERENCE_BOARDS[item.board], item.clock_mhz)
        core_ms = core_timing(item.cpu).cycles(mixes[PERSON]) / (item.clock_mhz * 1e3)
        rows.append(
            (
                item.model,
                f"{item.cpu} @ {item.clock_mhz:g} MHz ({item.board})",
                item.software,
                f"{item.latency_ms:.0f}",
                f"{found.ms:.0f}",
                f"{found.band_ms[0]:.0f}-{found.band_ms[1]:.0f}",
                f"{core_ms:.0f}",
                _pct(found.ms, item.latency_ms),
            )
        )
    if rows:
        _table(
            ("model", "core", "published software", "published ms", "estimate ms", "band ms",
             "core only ms", "error %"),
            rows,
            3,
        )  # fmt: skip


def measure(cpus: list[str]) -> int:
    """Emulate the models again on ``cpus``; compare with measured.py; print the table."""
    from cortex_m_instructions import arena, model_inputs  # this script's folder is on the path

    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import emulate
    from sweep.runtimes.cortex_m.toolchain import third_party_root

    files = {m: MLPERF / f for m, f in MODEL_FILES.items()}
    models_dir = third_party_root() / "tflite-micro" / "tensorflow/lite/micro/models"
    files[PERSON] = models_dir / "person_detect.tflite"
    measured: dict[str, dict[str, dict[str, int]]] = {}
    drift = False
    with tempfile.TemporaryDirectory(prefix="sweep-mlperf-") as tmp:
        for name, path in files.items():
            if not path.exists():
                print(f"skipped {name}: {path} not found", file=sys.stderr)
                continue
            model = path.read_bytes()
            bundle = Path(tmp) / name
            write_bundle(model, bundle, arena_bytes=arena(model))
            inputs = model_inputs(model, None, 1)
            for cpu in cpus:
                if name == PERSON and cpu not in ("cortex-m4f", "cortex-m0plus"):
                    continue
                start = time.perf_counter()
                result = emulate(bundle, cpu, inputs)
                seconds = time.perf_counter() - start
                counts = result.mix.as_dict(nonzero=True)
                measured.setdefault(cpu, {})[name] = counts
                known = MEASURED_MIXES.get(cpu, {}).get(name)
                same = "equal to measured.py" if known == counts else "DIFFERENT from measured.py"
                drift |= known != counts
                print(
                    f"{name} on {cpu}: {result.instructions:,} instructions ({same}); "
                    f"emulation {result.run_seconds:.1f} s, with the firmware build "
                    f"{seconds:.1f} s",
                    flush=True,
                )
    print("\nMEASURED_MIXES =", json.dumps(measured, indent=4))
    return 1 if drift else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="emulate the models again")
    parser.add_argument(
        "--cpus", nargs="+", default=["cortex-m4f", "cortex-m33", "cortex-m7", "cortex-m0plus"]
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.measure:
        return measure(args.cpus)
    for memory in FIT_ROWS:
        fit_memory(memory)
    fits_section()
    rows_section()
    energy_section()
    cores_section()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
