"""Check ``cortex_m``: what the board itself would spend, from its Cortex-M build emulated.

tflite-micro on the host says whether a model runs and in how much RAM, not how
long the board takes. This check builds the run's own bundle for the target's CPU
with TFLM + CMSIS-NN, runs it in the emulator (:mod:`sweep.runtimes.cortex_m`), and
turns the exact instruction count into board estimates with the target's figures:

- ``mcu_est_latency_ms`` = instructions × cycles per instruction ÷ ``clock_mhz``
  (the CPU's calibrated figure, :mod:`sweep.runtimes.cortex_m.calibration`);
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

log = logging.getLogger(__name__)

REASON = "mcu_emulation_reason"
"""Tag saying why a model was not emulated, or why its build failed."""


def _row(name, unit, better, heading, objective=None, **extra) -> Metric:
    return Metric(name, unit, better, DETERMINISTIC, heading, objective, MCU, **extra)


@dataclass(frozen=True)
class BoardModel:
    """The figures that turn an instruction count into board time and energy."""

    cpu: str
    clock_mhz: float
    cpi: float
    active_power_mw: float | None


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
    latency_ms = result.instructions * board.cpi / (board.clock_mhz * 1e3)
    metrics = {
        "mcu_emulated": 1.0,
        "mcu_instructions": float(result.instructions),
        "mcu_est_latency_ms": latency_ms,
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
    return metrics, {}


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
