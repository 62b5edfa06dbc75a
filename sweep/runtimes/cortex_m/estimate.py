"""One board figure from one emulated run: cycles, milliseconds, energy, and how sure.

:func:`estimate` is what the rest of the tool calls: the counted invoke's
instruction mix (:attr:`EmulationResult.mix`), the board's CPU, memory system and
clock, and optionally its active power. The answer carries its band and says which
of its parts are calibrated on published results and which come from the timing
model alone (:attr:`Estimate.basis`):

- the core's cycles always come from the Technical Reference Manual tables of
  :mod:`.timing` (no constant is fitted per core);
- the memory's stall comes from the board's datasheet facts and one exposure per
  memory system (:mod:`.memory`). It is *calibrated* when the board's memory system
  is itself fitted (``memory.calibration == memory.name``, :mod:`.fit`); the band
  is then the fit's residual and leave-one-out errors and the other CMSIS-NN-based
  rows published on that board. Otherwise the exposure is borrowed, and said to be:
  from the fit the board names, or from the fitted systems with the same kind of
  accelerator (an exposure, the share of flash accesses an accelerator does not
  hide, says nothing about another kind), or, with none of its kind, left out
  (the point is the core alone); the band then runs from the core's documented
  lower cycle counts to the largest fitted exposure, widened by the worst
  leave-one-out error.

Energy is the same time at the board's active power: ``µJ = ms x mW``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sweep.runtimes.cortex_m.fit import FIT_ROWS, MemoryFit, all_fits, fit_memory
from sweep.runtimes.cortex_m.memory import MemorySystem
from sweep.runtimes.cortex_m.mix import InstructionMix
from sweep.runtimes.cortex_m.reference_boards import REFERENCE_BOARDS
from sweep.runtimes.cortex_m.timing import core_timing


@dataclass(frozen=True)
class Estimate:
    """A board's latency and energy for one inference, with a band.

    ``cycles``/``ms``: the point estimate; ``band_ms``: (fast, slow) edges;
    ``energy_uj``/``band_energy_uj``: the same at ``power_mw`` (``None`` without
    one). ``core_cycles``: the core at zero wait states; ``memory_cycles``: what the
    memory adds at ``exposure``. ``calibrated``: the memory exposure was fitted on
    published results of this board's memory system; ``basis`` says in words what
    is calibrated and what is the timing model alone.
    """

    cycles: float
    ms: float
    band_ms: tuple[float, float]
    energy_uj: float | None
    band_energy_uj: tuple[float, float] | None
    calibrated: bool
    basis: str
    core_cycles: float
    memory_cycles: float
    exposure: float
    clock_mhz: float


def _ms(cycles: float, clock_mhz: float) -> float:
    return cycles / (clock_mhz * 1e3)


def _errors(fit: MemoryFit) -> list[float]:
    return [*fit.residuals_pct.values(), *fit.leave_one_out_pct.values()]


def _same_kind(memory: MemorySystem) -> list[MemoryFit]:
    """Fitted memory systems with the same kind of accelerator: an exposure (the share of
    flash accesses the accelerator does not hide) transfers only between those."""
    return [
        f
        for f in all_fits().values()
        if REFERENCE_BOARDS[f.memory].accelerator == memory.accelerator
    ]


@dataclass(frozen=True)
class _Memory:
    """The memory's share of an estimate: exposure, band edges (cycles), and its words."""

    exposure: float
    low: float
    high: float
    calibrated: bool
    memory_part: str
    band_part: str


def _fitted(fit: MemoryFit, cpu: str, total, zero_wait: bool, where: str) -> _Memory:
    """This board's own memory system was fitted: its exposure, its errors as the band."""
    errors = _errors(fit)
    point = total(fit.exposure)
    edges = [total(e) for e in fit.band_rows.values()]
    calibrated = fit.cpu == cpu
    if zero_wait:
        memory_part = "memory: zero wait states, nothing to calibrate"
    else:
        memory_part = f"memory: {where}, exposure {fit.exposure:.3f} calibrated on {fit.source}"
        memory_part += "" if calibrated else f" (fitted with a {fit.cpu} core)"
    return _Memory(
        exposure=fit.exposure,
        low=min([point * (1 + min(0.0, *errors) / 100), *edges]),
        high=max([point * (1 + max(0.0, *errors) / 100), *edges]),
        calibrated=calibrated,
        memory_part=memory_part,
        band_part="band: the fit's residuals and leave-one-out errors"
        + (", and the other CMSIS-NN-based rows on that board" if edges else ""),
    )


def _borrowed(memory: MemorySystem, total, core_range, zero_wait: bool, where: str) -> _Memory:
    """A board nobody measured: the exposure of the fitted memory system it names, or the
    geometric mean of those with its kind of accelerator (none: no stall at the point)."""
    fits = list(all_fits().values())
    worst = max(abs(e) for f in fits for e in _errors(f))
    if zero_wait:
        return _Memory(
            0.0, core_range[0], core_range[1], False,
            "memory: zero wait states (datasheet), no stall",
            "band: the core's documented cycle ranges",
        )  # fmt: skip
    named = [fit_memory(memory.calibration)] if memory.calibration in FIT_ROWS else []
    same = _same_kind(memory)
    if named:
        exposure = named[0].exposure
        whose = f"exposure {exposure:.3f} borrowed from {named[0].memory}'s fit"
    elif same:
        exposure = math.exp(sum(math.log(f.exposure) for f in same) / len(same))
        whose = (
            f"exposure {exposure:.3f} borrowed from the fitted {memory.accelerator} "
            f"memory systems ({', '.join(f.memory for f in same)})"
        )
    else:
        exposure = 0.0
        whose = f"no {memory.accelerator} memory system is fitted, so the point has no stall"
    alike = named + same
    low = total(min(f.exposure for f in alike), core_range[0]) if alike else core_range[0]
    return _Memory(
        exposure=exposure,
        low=low * (1 - worst / 100) if alike else low,
        high=total(max(f.exposure for f in fits), core_range[1]) * (1 + worst / 100),
        calibrated=False,
        memory_part=f"memory: {where} (datasheet), NOT calibrated on this board: {whose}",
        band_part="band: the core's documented cycle ranges, up to the largest fitted "
        f"exposure, widened by the worst leave-one-out error ({worst:.0f} %)",
    )


def estimate(
    mix: InstructionMix,
    cpu: str,
    memory: MemorySystem,
    clock_mhz: float,
    power_mw: float | None = None,
) -> Estimate:
    """Cycles, ms (with band) and energy of ``mix`` on a ``cpu`` board with ``memory``."""
    if clock_mhz <= 0:
        raise ValueError(f"clock_mhz must be positive, got {clock_mhz}")
    timing = core_timing(cpu)
    core = timing.cycles(mix)
    wait_states = memory.wait_states_at(clock_mhz)
    zero_wait = wait_states == 0 or not memory.in_flash
    where = f"{wait_states:g} wait states at {clock_mhz:g} MHz"

    def total(exposure: float, core_cycles: float = core) -> float:
        stall = 0.0 if zero_wait else memory.stall_cycles(mix, exposure, clock_mhz)
        return core_cycles + stall

    if memory.calibration in FIT_ROWS and memory.calibration == memory.name:
        part = _fitted(fit_memory(memory.calibration), cpu, total, zero_wait, where)
        core_part = f"core: {timing.source} (timing model, no fitted constant)"
    else:
        part = _borrowed(memory, total, timing.cycles_range(mix), zero_wait, where)
        core_part = f"core: {timing.source} (timing model alone)"
    point = total(part.exposure)
    low, high = part.low, part.high
    band = (_ms(min(low, point), clock_mhz), _ms(max(high, point), clock_mhz))
    ms = _ms(point, clock_mhz)
    energy = ms * power_mw if power_mw is not None else None
    band_energy = (band[0] * power_mw, band[1] * power_mw) if power_mw is not None else None
    return Estimate(
        cycles=point,
        ms=ms,
        band_ms=band,
        energy_uj=energy,
        band_energy_uj=band_energy,
        calibrated=part.calibrated,
        basis=f"{core_part}; {part.memory_part}; {part.band_part}",
        core_cycles=core,
        memory_cycles=point - core,
        exposure=part.exposure,
        clock_mhz=clock_mhz,
    )
