"""The ``target`` config group: where the optimized model is meant to run.

A sequence that wins on the desktop may not run on a microcontroller at all
(dynamic-range and float16 models are refused by tflite-micro) or may not fit
the board. Each option of the group is one YAML file under ``conf/target/``
naming a class here with ``_target_``; all share one interface, so the job
calls ``target.evaluate(...)`` and ``target.bundle(...)`` without asking which
kind of target it has:

- :class:`Host`: the desktop runtime only; no extra metrics.
- :class:`Microcontroller`: asks tflite-micro (:func:`sweep.runtimes.tflm.probe`) whether
  the model runs, in how small an arena, how accurately, and whether it fits
  the board's flash and RAM; writes a flashable bundle (:mod:`sweep.runtimes.bundle`).

``evaluate`` returns a :class:`TargetResult`: ``metrics`` (numbers, for
``mlflow.log_metrics``) and ``tags`` (the reasons, text, for
``mlflow.set_tags``). Reasons are tags rather than metrics because they are
the runtime's own words; a metric that cannot be measured (no arena when the
model does not run) is left out rather than logged as a sentinel number.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sweep.runtimes import tflm as mcu
from sweep.runtimes.bundle import write_bundle
from sweep.settings import at_least, one_of, plain_name, setting

log = logging.getLogger(__name__)

RUNTIMES = ("tflite_micro",)
"""Microcontroller runtimes this project can check a model against."""

KB = 1024
"""Board sizes are in KB of 1024 bytes, as datasheets count memory."""


@dataclass
class TargetResult:
    """What a target found out about one model.

    ``metrics``: MLflow metrics (floats; booleans as 1.0/0.0). ``tags``: MLflow
    tags, the reasons why a model does not run or fit (absent when it does).
    ``report``: the full tflite-micro report, ``None`` for the host.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    report: mcu.McuReport | None = None


class Target:
    """Interface of the ``target`` group (see the module docstring)."""

    name: str

    @property
    def is_microcontroller(self) -> bool:
        return False

    def evaluate(
        self,
        model: bytes,
        x_test: np.ndarray,
        y_test: np.ndarray,
        desktop_accuracy: float | None = None,
    ) -> TargetResult:
        """What this target adds to the desktop measurements (nothing, by default)."""
        return TargetResult()

    def bundle(self, model: bytes, out_dir: Path, result: TargetResult) -> list[Path]:
        """Write deployment files for ``model`` into ``out_dir``; return their paths."""
        return []


@dataclass
class Host(Target):
    """The desktop LiteRT runtime that the job measures anyway: nothing to add."""

    name: str = "host"


@dataclass
class Microcontroller(Target):
    """A board: flash holds the model, RAM holds the tensor arena.

    ``flash_kb``/``ram_kb`` are the board's totals (KB = 1024 bytes); the fit
    check counts only the model and the arena against them (see
    :func:`sweep.runtimes.tflm.fits`). ``parity_tolerance_pp`` bounds the gap, in
    percentage points, between tflite-micro's and the desktop runtime's accuracy.
    """

    name: str = setting(dataclasses.MISSING, plain_name())
    flash_kb: int = setting(dataclasses.MISSING, at_least(1))
    ram_kb: int = setting(dataclasses.MISSING, at_least(1))
    runtime: str = setting("tflite_micro", one_of(*RUNTIMES))
    cpu: str = ""
    parity_tolerance_pp: float = setting(0.5, at_least(0))
    latency_repeats: int = setting(50, at_least(1))

    @property
    def is_microcontroller(self) -> bool:
        return True

    @property
    def flash_bytes(self) -> int:
        return self.flash_kb * KB

    @property
    def ram_bytes(self) -> int:
        return self.ram_kb * KB

    def evaluate(
        self,
        model: bytes,
        x_test: np.ndarray,
        y_test: np.ndarray,
        desktop_accuracy: float | None = None,
    ) -> TargetResult:
        """Probe ``model`` on tflite-micro and check it against this board.

        Metrics always present: ``mcu_runs``, ``flash_bytes_needed``,
        ``fits_flash``, ``fits_target``. When the model runs, also
        ``arena_bytes`` (= ``ram_bytes_needed``), ``mcu_arena_reported_bytes``,
        ``fits_ram``, ``mcu_latency_median_us`` (host reference kernels: a
        proxy), ``mcu_eval_us_per_image``, ``mcu_accuracy`` and, given
        ``desktop_accuracy``, ``mcu_accuracy_gap_pp`` and ``mcu_parity_ok``.
        Tags: ``mcu_reason`` (why it does not run), ``mcu_fit_reason`` (why it
        does not fit this board).
        """
        report = mcu.probe(model, x_test, y_test, latency_repeats=self.latency_repeats)
        model_bytes = len(model)
        fits_flash = model_bytes <= self.flash_bytes
        metrics: dict[str, float] = {
            "mcu_runs": float(report.runs),
            "flash_bytes_needed": float(model_bytes),
            "fits_flash": float(fits_flash),
        }
        tags: dict[str, str] = {}
        if report.runs and report.arena_bytes is not None:
            ok, why = mcu.fits(model_bytes, report.arena_bytes, self.flash_bytes, self.ram_bytes)
            metrics["arena_bytes"] = float(report.arena_bytes)
            metrics["ram_bytes_needed"] = float(report.arena_bytes)
            metrics["fits_ram"] = float(report.arena_bytes <= self.ram_bytes)
            metrics["fits_target"] = float(ok)
            if report.arena_reported_bytes is not None:
                metrics["mcu_arena_reported_bytes"] = float(report.arena_reported_bytes)
            if report.latency_median_us is not None:
                metrics["mcu_latency_median_us"] = report.latency_median_us
            if report.eval_us_per_image is not None:
                metrics["mcu_eval_us_per_image"] = report.eval_us_per_image
            if report.accuracy is not None:
                metrics["mcu_accuracy"] = report.accuracy
                if desktop_accuracy is not None:
                    gap = abs(desktop_accuracy - report.accuracy) * 100.0
                    metrics["mcu_accuracy_gap_pp"] = gap
                    metrics["mcu_parity_ok"] = float(
                        mcu.parity(desktop_accuracy, report.accuracy, self.parity_tolerance_pp)
                    )
            if why:
                tags["mcu_fit_reason"] = f"{self.name}: {why}"
        else:
            metrics["fits_target"] = 0.0
            tags["mcu_reason"] = report.reason
            tags["mcu_fit_reason"] = f"{self.name}: does not run on {self.runtime}"
        log.debug("target %s: %s %s", self.name, metrics, tags)
        return TargetResult(metrics=metrics, tags=tags, report=report)

    def bundle(self, model: bytes, out_dir: Path, result: TargetResult) -> list[Path]:
        """The flashable bundle, only for a model the runtime runs (else ``[]``)."""
        if result.report is None or not result.report.runs:
            return []
        return write_bundle(model, out_dir, arena_bytes=result.report.arena_bytes)
