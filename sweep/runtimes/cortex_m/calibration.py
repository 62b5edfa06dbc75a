"""Cycles per instruction, calibrated once per CPU on published MLPerf Tiny board figures.

The emulator counts instructions exactly; a board spends cycles. The figure in
between, ``cpi`` in a target's YAML, is fitted here once per CPU (never per
model) on measured latencies of the MLPerf Tiny reference int8 models, whose
files are byte-identical to ``../shared/mlperf_tiny/`` (see its README for the
sources of every row below):

    cpi = published latency [ms] × clock [MHz] × 1000 ÷ emulated instructions

fitted over both models as the geometric mean of the per-model figures (least
squares on log latency: one constant that scales every model alike).

Which rows. The published TFLM/CMSIS-NN-based results on a Cortex-M4F at 120 MHz
(NUCLEO-L4R5ZI) span a band: microTVM + CMSIS-NN (v1.0) at the fast end, the
TFLM 2.3.1 + CMSIS-NN reference (v0.5, 2020 software, ``-Os``) at the slow end,
1.8× apart. Both give the same cycles-per-instruction on both models to within
0.4 %, so the *ratio* between models is robust; the level is what the rows
disagree on. The point figure is fitted on the microTVM + CMSIS-NN row: its
work is the same CMSIS-NN kernels of a recent vintage (2022) that dominate the
build emulated here (TFLM at 90b983c2 with CMSIS-NN 4ab83cc3), while the v0.5
reference ran a 2020 TFLM and CMSIS-NN that executes more instructions than
today's build for the same model, so dividing its cycles by today's count
overstates the CPI. The resulting ~1.56 cycles per instruction is what a
single-issue Cortex-M4 running multiply-accumulate loops from flash with a
prefetch/cache accelerator plausibly spends; ~2.8 would be far above the core's
documented instruction timings. A cross-check the fit never saw: TFLM +
CMSIS-NN on a Cortex-M33 @ 200 MHz (Renesas, v0.7) gives 1.3–1.65 with these
counts. The slow end is kept as the band's upper edge (:attr:`Calibration.band_cpi`).

CPUs without a TFLM/CMSIS-NN row (Cortex-M7, Cortex-M0+) are not calibrated:
they take the Cortex-M4F figure as a stated assumption (:attr:`Calibration.status`
``"assumption"``). The published Cortex-M7 rows use the vendors' own kernels and
are a floor, not a calibration point.

Pure data and arithmetic: no emulation here. The instruction counts below were
measured with :func:`sweep.runtimes.cortex_m.emulate` (pseudo-random int8 input,
seed 0; int8 kernels take the same path whatever the values);
``benchmarks/mlperf_estimates.py`` measures them again and says when they drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sweep.runtimes.cortex_m.cpus import CPUS, cpu_spec

EMULATED_CPUS: tuple[str, ...] = tuple(
    name for name, spec in CPUS.items() if spec.emulated and name != "cortex-m33"
)
"""The CPUs whose targets carry this module's single CPI. The Cortex-M33 is emulated but
has no CPI: its boards are estimated by :func:`sweep.runtimes.cortex_m.estimate.estimate`
(the per-class cycle model), which replaces this module's CPI for every CPU."""

MODELS: dict[str, str] = {
    "kws": "kws_ref_model.tflite",
    "ic": "ic_resnet8_int8.tflite",
}
"""MLPerf Tiny benchmark -> reference model file in ``../shared/mlperf_tiny/``."""

MACS: dict[str, int] = {"kws": 2_656_768, "ic": 12_501_632}
"""Multiply-accumulates per inference (conv, depthwise and fully-connected layers)."""


@dataclass(frozen=True)
class PublishedRow:
    """One published MLPerf Tiny closed-division result (median latency per inference).

    ``cpu``: the CPU name of :data:`sweep.runtimes.cortex_m.CPUS` whose instruction
    counts compare with it, ``None`` for a core not built here. ``kind``:
    ``"tflm_cmsis_nn"`` (TFLM + CMSIS-NN), ``"cmsis_nn"`` (CMSIS-NN kernels under
    another framework) or ``"own_kernels"`` (a vendor engine: a floor, not a match).
    """

    key: str
    round: str
    system: str
    core: str
    cpu: str | None
    clock_mhz: float
    software: str
    kind: str
    latency_ms: Mapping[str, float]
    energy_uj: Mapping[str, float] | None = None

    @property
    def label(self) -> str:
        return f"{self.round} {self.system} ({self.software})"


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow(
        "v0.5-reference", "v0.5", "reference / Nucleo-L4R5ZI", "Cortex-M4F", "cortex-m4f", 120,
        "TFLM 2.3.1 + CMSIS-NN, mbed-os, -Os", "tflm_cmsis_nn",
        {"ic": 704.2, "kws": 181.9}, {"ic": 29_207, "kws": 7_374},
    ),
    PublishedRow(
        "v1.0-octoml", "v1.0", "OctoML / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f", 120,
        "microTVM + CMSIS-NN, Zephyr", "cmsis_nn", {"ic": 389.6, "kws": 99.8},
    ),
    PublishedRow(
        "v1.1-skymizer", "v1.1", "Skymizer / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f", 120,
        "ONNC + CMSIS_5", "own_kernels", {"ic": 298.7, "kws": 82.0},
    ),
    PublishedRow(
        "v0.7-st", "v0.7", "STMicroelectronics / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        120, "X-CUBE-AI 7.1", "own_kernels", {"ic": 252.8, "kws": 97.6},
    ),
    PublishedRow(
        "v1.2-st", "v1.2", "STMicroelectronics / NUCLEO_L4R5ZI", "Cortex-M4F", "cortex-m4f",
        120, "X-CUBE-AI 9.0", "own_kernels", {"ic": 165.1, "kws": 43.2},
    ),
    PublishedRow(
        "v0.7-renesas", "v0.7", "renesas / EK-RA6M4", "Cortex-M33", None, 200,
        "TFLM + CMSIS-NN", "tflm_cmsis_nn", {"ic": 246.2, "kws": 50.6},
    ),
    PublishedRow(
        "v1.0-plumerai", "v1.0", "plumerai / DISCO_F746NG", "Cortex-M7", "cortex-m7", 216,
        "Plumerai engine", "own_kernels", {"ic": 64.8, "kws": 19.1},
    ),
    PublishedRow(
        "v1.2-st-h7", "v1.2", "STMicroelectronics / NUCLEO_H7A3ZI_Q", "Cortex-M7", "cortex-m7",
        280, "X-CUBE-AI 9.0", "own_kernels", {"ic": 40.8, "kws": 11.3},
    ),
)  # fmt: skip
"""The table of ``../shared/mlperf_tiny/README.md``, row for row."""

ROWS: dict[str, PublishedRow] = {row.key: row for row in PUBLISHED}

EMULATED_INSTRUCTIONS: dict[str, dict[str, int]] = {
    "cortex-m4f": {"kws": 7_698_264, "ic": 29_863_649},
    "cortex-m7": {"kws": 7_644_040, "ic": 30_026_494},
}
"""Instructions per ``Invoke()`` of the reference models, TFLM 90b983c2 + CMSIS-NN 4ab83cc3,
GCC 12.2 (``arm-none-eabi``), TFLM's release build flags (see :mod:`.cpus`)."""

CALIBRATION_ROW = "v1.0-octoml"
"""The row the point CPI is fitted on (why: the module docstring)."""

UPPER_ROW = "v0.5-reference"
"""The row giving the band's slow edge: the only TFLM + CMSIS-NN row on a Cortex-M4F."""

REFERENCE_CPU = "cortex-m4f"
"""The CPU calibrated on published rows; the others borrow its figure (an assumption)."""


def effective_cpi(latency_ms: float, clock_mhz: float, instructions: int) -> float:
    """Cycles spent per emulated instruction: ms × MHz × 1000 ÷ instructions."""
    return latency_ms * clock_mhz * 1e3 / instructions


def estimate_ms(instructions: int, cpi: float, clock_mhz: float) -> float:
    """Latency of ``instructions`` at ``cpi`` cycles each on a ``clock_mhz`` core."""
    return instructions * cpi / (clock_mhz * 1e3)


def fit_cpi(
    row: PublishedRow, instructions: Mapping[str, int], models: tuple[str, ...] | None = None
) -> float:
    """One CPI for ``row`` over ``models`` (all it publishes by default): the geometric
    mean of the per-model figures, i.e. least squares on log latency."""
    names = models or tuple(m for m in row.latency_ms if m in instructions)
    if not names:
        raise ValueError(f"no model of {row.key} has an instruction count")
    logs = [
        math.log(effective_cpi(row.latency_ms[m], row.clock_mhz, instructions[m])) for m in names
    ]
    return math.exp(sum(logs) / len(logs))


@dataclass(frozen=True)
class Calibration:
    """The cycles-per-instruction figure of one CPU and where it comes from.

    ``status``: ``"calibrated"`` (fitted on ``rows``) or ``"assumption"`` (no
    TFLM/CMSIS-NN row exists for this CPU: the reference CPU's figure, stated as
    such). ``band_cpi``: the published TFLM/CMSIS-NN-based band (fast, slow) on
    the reference CPU, carried over as-is for an assumption. ``residuals_pct``:
    (estimate − published) ÷ published per model of the fitted row;
    ``leave_one_out_pct``: the same for each model when the CPI is fitted on the
    other model alone.
    """

    cpu: str
    cpi: float
    status: str
    source: str
    rows: tuple[str, ...]
    band_cpi: tuple[float, float]
    residuals_pct: Mapping[str, float]
    leave_one_out_pct: Mapping[str, float]


def _errors(row: PublishedRow, instructions: Mapping[str, int]) -> tuple[dict, dict]:
    cpi = fit_cpi(row, instructions)
    models = tuple(m for m in row.latency_ms if m in instructions)
    residuals, loo = {}, {}
    for m in models:
        published = row.latency_ms[m]
        residuals[m] = 100 * (estimate_ms(instructions[m], cpi, row.clock_mhz) / published - 1)
        others = tuple(o for o in models if o != m)
        if others:
            held_out = fit_cpi(row, instructions, others)
            loo[m] = 100 * (estimate_ms(instructions[m], held_out, row.clock_mhz) / published - 1)
    return residuals, loo


def calibrate(
    cpu: str, instructions: Mapping[str, Mapping[str, int]] = EMULATED_INSTRUCTIONS
) -> Calibration:
    """The calibration of ``cpu`` from the published rows and these instruction counts."""
    reference = instructions[REFERENCE_CPU]
    row, upper = ROWS[CALIBRATION_ROW], ROWS[UPPER_ROW]
    cpi = fit_cpi(row, reference)
    band = (cpi, fit_cpi(upper, reference))
    residuals, loo = _errors(row, reference)
    if cpu == REFERENCE_CPU:
        source = (
            f"calibrated on MLPerf Tiny {row.label}, {row.core} @ {row.clock_mhz:g} MHz, "
            f"kws+ic (residuals {_pct(residuals)}; leave-one-out {_pct(loo)}); "
            f"published TFLM/CMSIS-NN-based band on this CPU: CPI {band[0]:.2f}-{band[1]:.2f} "
            f"(upper edge: {upper.label})"
        )
        return Calibration(cpu, cpi, "calibrated", source, (row.key,), band, residuals, loo)
    source = (
        f"assumption, not calibrated: no published TFLM/CMSIS-NN figure exists for {cpu}, "
        f"so it takes the {REFERENCE_CPU} figure (calibrated on {row.label})"
    )
    return Calibration(cpu, cpi, "assumption", source, (), band, {}, {})


def _pct(errors: Mapping[str, float]) -> str:
    return ", ".join(f"{m} {e:+.1f}%" for m, e in errors.items())


def calibration_for(cpu: str) -> Calibration | None:
    """The calibration a target on ``cpu`` carries; ``None`` for a CPU not emulated here."""
    try:
        if not cpu_spec(cpu).emulated:
            return None
    except ValueError:
        return None
    return calibrate(cpu)
