"""The one constant per memory system, fitted by code on published MLPerf Tiny latencies.

    board cycles = core cycles (mix, :mod:`.timing`) + exposure x wait states x flash accesses

Everything on the right is a measured count, a Technical Reference Manual figure or
a datasheet figure, except ``exposure`` (:mod:`.memory`): the fraction of flash
accesses the board's accelerator does not hide. It is fitted here, once per memory
system, on the published latencies of both MLPerf Tiny models on that board (least
squares on log latency, so kws and ic weigh alike), never per model. The
instruction mixes are this project's measured facts (:mod:`.measured`); which row
is fitted on each board is :data:`FIT_ROWS`, and the other same-stack rows on that
board only widen its band.

Pure arithmetic on data: nothing here emulates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from sweep.runtimes.cortex_m.measured import MEASURED_MIXES
from sweep.runtimes.cortex_m.memory import MemorySystem
from sweep.runtimes.cortex_m.mix import InstructionMix
from sweep.runtimes.cortex_m.published import PUBLISHED, ROWS, PublishedRow
from sweep.runtimes.cortex_m.reference_boards import REFERENCE_BOARDS
from sweep.runtimes.cortex_m.timing import core_timing

FIT_ROWS: dict[str, str] = {
    "nucleo_l4r5zi": "v1.0-octoml",
    "ek_ra6m4": "v0.7-renesas",
    "nrf5340_dk": "v1.0-octoml-nrf5340",
}
"""Memory system -> the published row its exposure is fitted on. The NUCLEO-L4R5ZI is
fitted on microTVM + CMSIS-NN (2022) rather than the TFLM 2.3.1 reference (2020,
-Os, 1.8x slower): the kernels that make up nearly all of today's instructions are
the 2022 ones; the 2020 row is kept as the band's slow edge (:func:`band_rows`)."""

FITTED_KINDS = ("tflm_cmsis_nn", "cmsis_nn")
"""Rows of these kinds (CMSIS-NN kernels) may be fitted on or widen a band; vendor
engines with their own kernels never are."""

_MAX_EXPOSURE = 4.0


def board_cycles(
    mix: InstructionMix,
    cpu: str,
    memory: MemorySystem,
    exposure: float,
    clock_mhz: float | None = None,
) -> float:
    """Core cycles at zero wait states plus the memory's stall at this exposure."""
    return core_timing(cpu).cycles(mix) + memory.stall_cycles(mix, exposure, clock_mhz)


def published_cycles(row: PublishedRow, model: str) -> float:
    return row.latency_ms[model] * row.clock_mhz * 1e3


def _log_error(row: PublishedRow, mixes: Mapping[str, InstructionMix], models, exposure) -> float:
    memory = REFERENCE_BOARDS[row.board]
    return sum(
        math.log(board_cycles(mixes[m], row.cpu, memory, exposure) / published_cycles(row, m)) ** 2
        for m in models
    )


def fit_exposure(
    row: PublishedRow,
    mixes: Mapping[str, InstructionMix],
    models: tuple[str, ...] | None = None,
) -> float:
    """The exposure that best reproduces ``row`` on ``models`` (all it publishes that have
    a mix, by default): least squares on log latency, over [0, 4], by golden-section
    search (the error is unimodal in the exposure: cycles grow linearly with it)."""
    names = models or tuple(m for m in row.latency_ms if m in mixes)
    if not names:
        raise ValueError(f"no model of {row.key} has a measured instruction mix")
    low, high = 0.0, _MAX_EXPOSURE
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if _log_error(row, mixes, names, a) <= _log_error(row, mixes, names, b):
            high = b
        else:
            low = a
    return (low + high) / 2


def error_pct(row: PublishedRow, model: str, mixes, exposure: float) -> float:
    """(estimate - published) / published, in percent, for one model."""
    memory = REFERENCE_BOARDS[row.board]
    estimate = board_cycles(mixes[model], row.cpu, memory, exposure, row.clock_mhz)
    return 100 * (estimate / published_cycles(row, model) - 1)


@dataclass(frozen=True)
class MemoryFit:
    """The fitted exposure of one memory system and how well it holds.

    ``residuals_pct``: each model's error with the exposure fitted on both.
    ``leave_one_out_pct``: each model's error with the exposure fitted on the other
    model alone (a model the fit never saw). ``band_rows``: the other CMSIS-NN-based
    rows on the same board, each with the exposure that would reproduce it.
    """

    memory: str
    cpu: str
    row: str
    exposure: float
    residuals_pct: Mapping[str, float]
    leave_one_out_pct: Mapping[str, float]
    band_rows: Mapping[str, float]

    @property
    def source(self) -> str:
        row = ROWS[self.row]
        return f"{row.label}, {row.core} @ {row.clock_mhz:g} MHz"


def mixes_for(cpu: str) -> dict[str, InstructionMix]:
    """The measured mixes of the MLPerf Tiny models on ``cpu``."""
    return {m: InstructionMix(c) for m, c in MEASURED_MIXES.get(cpu, {}).items()}


def band_rows(memory: str, fitted: str) -> list[PublishedRow]:
    """Other CMSIS-NN-based rows on the same board as ``fitted``."""
    return [
        r for r in PUBLISHED if r.board == memory and r.key != fitted and r.kind in FITTED_KINDS
    ]


@functools.cache
def fit_memory(memory: str) -> MemoryFit:
    """Fit the exposure of ``memory`` on its :data:`FIT_ROWS` row (computed, never copied)."""
    row = ROWS[FIT_ROWS[memory]]
    mixes = mixes_for(row.cpu)
    models = tuple(m for m in row.latency_ms if m in mixes)
    exposure = fit_exposure(row, mixes, models)
    residuals = {m: error_pct(row, m, mixes, exposure) for m in models}
    loo = {}
    for m in models:
        others = tuple(o for o in models if o != m)
        if others:
            loo[m] = error_pct(row, m, mixes, fit_exposure(row, mixes, others))
    extra = {r.key: fit_exposure(r, mixes) for r in band_rows(memory, row.key)}
    return MemoryFit(memory, row.cpu, row.key, exposure, residuals, loo, extra)


def all_fits() -> dict[str, MemoryFit]:
    return {memory: fit_memory(memory) for memory in FIT_ROWS}
