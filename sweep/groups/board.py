"""What the board itself would spend: the model's Cortex-M build emulated and counted.

tflite-micro on the host says whether a model runs and in how much RAM, not how
long the board takes. :func:`board_figures` builds the run's own bundle for the
target's CPU with TFLM + CMSIS-NN, runs it in the emulator
(:mod:`sweep.runtimes.cortex_m`), and turns the exact instruction count into
board estimates with the target's own figures:

- ``mcu_est_latency_ms`` = instructions × ``cpi`` ÷ ``clock_mhz`` (cycles per
  instruction is an assumption per CPU, named with its source in the board YAML;
  no flash wait states, caches or bus contention are modelled);
- ``mcu_est_energy_uj`` = that latency × ``active_power_mw`` (a datasheet figure);
- ``firmware_flash_bytes`` / ``firmware_ram_bytes`` of the linked image;
- ``mcu_emulated_parity_ok``: the emulated predictions equal tflite-micro's.

A machine without the Arm toolchain gets one warning naming the packages, and the
sweep goes on with the tflite-micro figures.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.runtimes import cortex_m

log = logging.getLogger(__name__)


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
    board: BoardModel, bundle_dir: Path, inputs: np.ndarray, host_predictions: np.ndarray
) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics and tags of the emulated build (``mcu_emulated`` 0 with a reason if none)."""
    try:
        result = cortex_m.emulate(bundle_dir, board.cpu, inputs)
    except (cortex_m.ToolchainMissing, cortex_m.ThirdPartyMissing) as error:
        _warn_once(f"{error} Going on with the tflite-micro figures only.")
        return {"mcu_emulated": 0.0}, {"mcu_emulation_reason": str(error)}
    except (cortex_m.BundleError, cortex_m.EmulationError, cortex_m.FirmwareError) as error:
        log.error("the %s build of this bundle failed: %s", board.cpu, error)
        reason = f"the {board.cpu} build failed: {error}"
        return {"mcu_emulated": 0.0, "mcu_emulated_parity_ok": 0.0}, {
            "mcu_emulation_reason": reason
        }
    if not result.emulated:
        return {"mcu_emulated": 0.0}, {"mcu_emulation_reason": result.reason}
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
