"""Check ``cortex_m``: what the board itself would spend, from its Cortex-M build emulated.

tflite-micro on the host says whether a model runs and in how much RAM, not how
long the board takes. This check builds the run's own bundle for the target's CPU
with TFLM + CMSIS-NN, runs it in the emulator (:mod:`sweep.runtimes.cortex_m`), and
turns the counted invoke's exact instruction mix into board estimates with the
target's figures:

- ``mcu_est_cycles`` and ``mcu_est_latency_ms`` (= cycles ÷ ``clock_mhz``): the
  core's timing table applied to the mix, plus the stall of the board's memory
  system (:func:`sweep.runtimes.cortex_m.estimate`), with the band's edges
  (``mcu_est_latency_low_ms`` / ``_high_ms``) and the tag ``mcu_estimate_basis``
  saying what is calibrated and what is the timing model alone; ``target.cpi``
  pins cycles per instruction instead;
- ``mcu_est_energy_uj`` = that latency × ``active_power_mw`` (a datasheet figure);
- ``firmware_flash_bytes`` / ``firmware_ram_bytes`` of the linked image;
- ``mcu_emulated_parity_ok``: the emulated predictions equal tflite-micro's.

Only a model that runs on tflite-micro and fits the board is built: a board cannot
run the others, so their emulation would be wasted. A machine without the Arm
toolchain gets one warning naming the packages, and goes on with the tflite-micro
figures.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.checks.base import Check, Measurement, ModelUnderTest
from sweep.checks.micro_runtime import BUNDLE, REPORT
from sweep.metrics import DETERMINISTIC, MCU, Metric
from sweep.stores.fingerprints import package_versions
from sweep.stores.memos import per_sweep

if TYPE_CHECKING:
    from sweep.groups.target import Microcontroller
    from sweep.runtimes.cortex_m import InstructionMix, MemorySystem

log = logging.getLogger(__name__)

REASON = "mcu_emulation_reason"
"""Tag saying why a model was not emulated, or why its build failed."""

BASIS = "mcu_estimate_basis"
"""Tag saying where the board estimate's cycles come from and what is calibrated."""


def _row(name, unit, better, heading, objective=None, **extra) -> Metric:
    return Metric(name, unit, better, DETERMINISTIC, heading, objective, MCU, **extra)


@dataclass(frozen=True)
class BoardModel:
    """The figures that turn an emulated run into board time and energy.

    ``cpi``: cycles per instruction pinned by the user (None: the cycle model);
    ``memory``: the board's memory system (None: not described, no stall counted).
    """

    cpu: str
    clock_mhz: float
    cpi: float | None
    active_power_mw: float | None
    memory: MemorySystem | None = None


def board_estimate(
    board: BoardModel, instructions: int, mix: InstructionMix | None
) -> tuple[dict[str, float], str]:
    """Estimated cycles and latency (with the band's edges) and the basis in words."""
    if board.cpi is not None or mix is None:
        cpi = board.cpi
        if cpi is None:
            raise ValueError("an emulated run without its instruction mix needs target.cpi")
        cycles = instructions * cpi
        ms = cycles / (board.clock_mhz * 1e3)
        return {"mcu_est_cycles": cycles, "mcu_est_latency_ms": ms}, (
            f"cycles: instructions × target.cpi={cpi:g}, pinned in the config "
            "(no cycle model, no band)"
        )
    from sweep.runtimes import cortex_m

    memory = board.memory or cortex_m.MemorySystem(
        name="undescribed", code="sram", weights="sram", wait_states=0, fetch_bytes=4,
        accelerator="none",
    )  # fmt: skip
    found = cortex_m.estimate(mix, board.cpu, memory, board.clock_mhz, board.active_power_mw)
    metrics = {
        "mcu_est_cycles": found.cycles,
        "mcu_est_latency_ms": found.ms,
        "mcu_est_latency_low_ms": found.band_ms[0],
        "mcu_est_latency_high_ms": found.band_ms[1],
    }
    if board.memory is None:  # what flash adds is unknown: a floor, with no slow edge
        del metrics["mcu_est_latency_high_ms"]
        return metrics, (
            f"core: the {board.cpu} timing model alone; memory: NOT described "
            "(target.memory), so no flash wait state is counted: a floor, no slow edge"
        )
    return metrics, found.basis


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)


def board_figures(
    board: BoardModel, bundle_dir: Any, inputs: np.ndarray, host_predictions: np.ndarray
) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics and tags of the emulated build (``mcu_emulated`` 0 with a reason if none)."""
    from sweep.runtimes import cortex_m

    try:
        result = cortex_m.emulate(bundle_dir, board.cpu, inputs)
    except (cortex_m.ToolchainMissing, cortex_m.ThirdPartyMissing) as error:
        _warn_once(f"{error} Going on with the tflite-micro figures only.")
        return {"mcu_emulated": 0.0}, {REASON: str(error)}
    except (cortex_m.BundleError, cortex_m.EmulationError, cortex_m.FirmwareError) as error:
        log.error("the %s build of this bundle failed: %s", board.cpu, error)
        reason = f"the {board.cpu} build failed: {error}"
        return {"mcu_emulated": 0.0, "mcu_emulated_parity_ok": 0.0}, {REASON: reason}
    if not result.emulated:
        return {"mcu_emulated": 0.0}, {REASON: result.reason}
    estimated, basis = board_estimate(board, result.instructions, result.mix)
    latency_ms = estimated["mcu_est_latency_ms"]
    metrics = {
        "mcu_emulated": 1.0,
        "mcu_instructions": float(result.instructions),
        **estimated,
        "firmware_flash_bytes": float(result.firmware_flash_bytes),
        "firmware_ram_bytes": float(result.firmware_ram_bytes),
        "mcu_emulated_parity_ok": float(np.array_equal(result.predictions, host_predictions)),
    }
    if board.active_power_mw is not None:
        metrics["mcu_est_energy_uj"] = latency_ms * board.active_power_mw
    log.info(
        "%s (emulated): %d instructions per inference, ~%.3f ms at %g MHz; firmware %d B flash,"
        " %d B RAM; predictions %s tflite-micro's",
        board.cpu,
        result.instructions,
        latency_ms,
        board.clock_mhz,
        result.firmware_flash_bytes,
        result.firmware_ram_bytes,
        "equal" if metrics["mcu_emulated_parity_ok"] else "DIFFER from",
    )
    return metrics, {BASIS: basis}


class CortexMCheck(Check):
    """The model's Cortex-M build (TFLM + CMSIS-NN) run in an emulator of the board's CPU."""

    name = "cortex_m"
    needs_board = True
    requires = ("tflite_micro",)
    rows = (
        _row("mcu_est_latency_ms", "ms", "lower", "fastest on the board", "fastest",
             shown="~{:.3g} ms on the board"),
        _row("mcu_emulated", "", None, "1 when the Cortex-M build was emulated"),
        _row("mcu_instructions", "", "lower", "instructions per inference"),
        _row("mcu_est_cycles", "", "lower", "cycles per inference on the board (estimate)"),
        _row("mcu_est_latency_low_ms", "ms", None, "fast edge of the estimate's band"),
        _row("mcu_est_latency_high_ms", "ms", None, "slow edge of the estimate's band"),
        _row("mcu_est_energy_uj", "µJ", "lower", "energy per inference (estimate)",
             shown="~{:.3g} µJ"),
        _row("firmware_flash_bytes", "B", "lower", "flash of the linked firmware"),
        _row("firmware_ram_bytes", "B", "lower", "RAM of the linked firmware"),
        _row("mcu_emulated_parity_ok", "", "higher", "1 when it matches the host"),
    )  # fmt: skip

    def measure(
        self, model: ModelUnderTest, target: Microcontroller, earlier: Measurement
    ) -> Measurement:
        report = earlier.extras.get(REPORT)
        if report is None or not report.runs or not target.emulate:
            return Measurement()  # nothing to build, or the user switched the build off
        from sweep.runtimes import cortex_m

        spec = cortex_m.cpu_spec(target.cpu)
        if not spec.emulated:
            return Measurement({"mcu_emulated": 0.0}, {REASON: spec.reason})
        if not earlier.metrics.get("fits_target"):
            return Measurement(tags={REASON: f"it does not fit {target.name}"})
        if report.inputs is None or not len(report.inputs):
            return Measurement(tags={REASON: "no input to run it on"})
        n = min(target.emulate_images, len(report.inputs))
        metrics, tags = board_figures(
            target.board, model.out_dir / BUNDLE, report.inputs[:n], report.predictions[:n]
        )
        return Measurement(metrics, tags)

    def exclusion(self, metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        if metrics.get("mcu_emulated_parity_ok") != 0.0:
            return None
        why = tags.get(REASON, "its predictions differ from tflite-micro's")
        return "its Cortex-M build (TFLM + CMSIS-NN) does not run as on the host: " + why

    def cache_material(self, target: Microcontroller) -> dict[str, Any]:
        """The emulator's version and the firmware library's identity (its sources, flags
        and compiler): a new toolchain must not reuse counts the old one made."""
        material: dict[str, Any] = package_versions(("unicorn",))
        if target.emulate:
            material["library"] = _library_identity(target.cpu)
        return material


@per_sweep
def _library_identity(cpu: str) -> str:
    """The key of the CPU's TFLM + CMSIS-NN build (sources, flags, compiler version), or
    why there is none (then nothing is emulated, and the results say so)."""
    from sweep.runtimes import cortex_m

    if not cortex_m.is_emulated(cpu):
        return "not emulated"
    try:
        return cortex_m.cache_key(cpu, "cmsis_nn")
    except (cortex_m.ToolchainMissing, cortex_m.ThirdPartyMissing) as missing:
        return f"unavailable: {type(missing).__name__}"
