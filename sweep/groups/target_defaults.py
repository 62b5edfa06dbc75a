"""Defaults that follow from the chosen target, for configs to interpolate.

``conf/experiment/board_search.yaml`` sets ``search.latency_metric:
${sweep_latency_metric:${target}}``: the board estimate (``mcu_est_latency_ms``, from the
emulated Cortex-M build) where the target's checks emulate its CPU, else the host's
tflite-micro timing (``mcu_latency_median_us``), which every board measures. This module
is imported before Hydra parses the command line, so it stays light: the CPU table is
read only when the interpolation is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

BOARD_ESTIMATE_LATENCY = "mcu_est_latency_ms"
HOST_TFLM_LATENCY = "mcu_latency_median_us"
RESOLVER = "sweep_latency_metric"
_BOARD_CHECK = "cortex_m"  # sweep.checks.board_emulation.CortexMCheck.name


def _runs_board_check(checks: Any) -> bool:
    names = [str(c) for c in (checks or [])]
    return any(n == _BOARD_CHECK or n.endswith(".CortexMCheck") for n in names)


def builds_for_its_cpu(target: Mapping[str, Any]) -> bool:
    """The target's checks build its CPU's firmware and emulate it (``cortex_m``, ``emulate``)."""
    return _runs_board_check(target.get("checks")) and bool(target.get("emulate", False))


def latency_metric(target: Mapping[str, Any]) -> str:
    """The latency a search on ``target`` should minimize by default (see the module doc)."""
    if not builds_for_its_cpu(target):
        return HOST_TFLM_LATENCY
    from sweep.runtimes.cortex_m.cpus import CPUS

    spec = CPUS.get(str(target.get("cpu")))
    return BOARD_ESTIMATE_LATENCY if spec is not None and spec.emulated else HOST_TFLM_LATENCY


def register_resolvers() -> None:
    """``${sweep_latency_metric:${target}}`` (the target node is passed whole)."""
    OmegaConf.register_new_resolver(RESOLVER, latency_metric, replace=True)
