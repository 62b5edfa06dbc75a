"""One board figure from one emulated run: cycles, milliseconds, energy, and how sure.

:func:`estimate` is what the rest of the tool calls: the counted invoke's
instruction mix (:attr:`EmulationResult.mix`), the board's CPU, memory system and
clock, and optionally its active power. The answer carries its band and says which
of its parts are calibrated on published results and which come from the timing
model alone (:attr:`Estimate.basis`):

- the core's cycles always come from the Technical Reference Manual tables of
  :mod:`.timing` (no constant is fitted per core);
- the memory's stall comes from the board's datasheet facts and one exposure per
  memory system (:mod:`.memory`), *calibrated* when the board's memory system is
  one of the fitted ones (:mod:`.fit`); otherwise the exposure is borrowed from the
  fitted systems with the same kind of accelerator, and the band spans every
  fitted exposure.

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


def _borrowed(memory: MemorySystem) -> tuple[list[MemoryFit], str]:
    """The fits an uncalibrated memory system borrows its exposure from."""
    fits = list(all_fits().values())
    same = [f for f in fits if _accelerator(f.memory) == memory.accelerator]
    if same:
        return same, f"the fitted {memory.accelerator} memory systems"
    return fits, "every fitted memory system (none has this accelerator)"


def _accelerator(memory_name: str) -> str:
    return REFERENCE_BOARDS[memory_name].accelerator


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
    core_low, core_high = timing.cycles_range(mix)

    wait_states = memory.wait_states_at(clock_mhz)
    zero_wait = wait_states == 0 or not memory.in_flash

    def total(exposure: float, core_cycles: float = core) -> float:
        return core_cycles + (0.0 if zero_wait else memory.stall_cycles(mix, exposure, clock_mhz))

    if memory.calibration in FIT_ROWS:
        fit = fit_memory(memory.calibration)
        exposure = fit.exposure
        errors = _errors(fit)
        edges = [total(e) for e in fit.band_rows.values()]
        point = total(exposure)
        low = min([point * (1 + min(0.0, *errors) / 100), *edges])
        high = max([point * (1 + max(0.0, *errors) / 100), *edges])
        calibrated = fit.cpu == cpu
        core_part = f"core: {timing.source} (timing model, no fitted constant)"
        if zero_wait:
            memory_part = "memory: zero wait states, nothing to calibrate"
        else:
            memory_part = (
                f"memory: {wait_states:g} wait states at {clock_mhz:g} MHz, "
                f"exposure {exposure:.3f} calibrated on {fit.source}"
                + ("" if calibrated else f" (fitted with a {fit.cpu} core)")
            )
        band_part = "band: the fit's residuals and leave-one-out errors" + (
            ", and the other CMSIS-NN-based rows on that board" if edges else ""
        )
    else:
        fits, whose = _borrowed(memory)
        exposure = math.exp(sum(math.log(max(f.exposure, 1e-9)) for f in fits) / len(fits))
        every = [f.exposure for f in all_fits().values()]
        worst = max(abs(e) for f in all_fits().values() for e in _errors(f))
        point = total(exposure)
        low = total(min(every), core_low) * (1 - worst / 100)
        high = total(max(every), core_high) * (1 + worst / 100)
        calibrated = False
        core_part = f"core: {timing.source} (timing model alone)"
        if zero_wait:
            memory_part = "memory: zero wait states (datasheet), no stall"
            low, high = core_low, core_high
        else:
            memory_part = (
                f"memory: {wait_states:g} wait states at {clock_mhz:g} MHz (datasheet), exposure "
                f"{exposure:.3f} borrowed from {whose}, NOT calibrated on this board"
            )
        band_part = (
            "band: the core's documented cycle ranges"
            + ("" if zero_wait else " and every fitted exposure")
            + (
                f", widened by the worst leave-one-out error ({worst:.0f} %)"
                if not zero_wait
                else ""
            )
        )
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
        calibrated=calibrated,
        basis=f"{core_part}; {memory_part}; {band_part}",
        core_cycles=core,
        memory_cycles=point - core,
        exposure=exposure,
        clock_mhz=clock_mhz,
    )
