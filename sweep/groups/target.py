"""The ``target`` config group: where the optimized model is meant to run.

A sequence that wins on the desktop may not run on a microcontroller at all
(dynamic-range and float16 models are refused by tflite-micro) or may not fit
the board. Each option of the group is one YAML file under ``conf/target/``
naming a class here with ``_target_``; all share one interface, so the job
calls ``target.evaluate(...)`` without asking which kind of target it has:

- :class:`Host`: the desktop runtime only; no extra metrics.
- :class:`Microcontroller`: asks tflite-micro (:func:`sweep.runtimes.tflm.probe`) whether
  the model runs, in how small an arena, how accurately, and whether it fits
  the board's flash and RAM; writes a flashable bundle (:mod:`sweep.runtimes.bundle`)
  and, for a Cortex-M board, builds and runs it in an emulator (:mod:`sweep.groups.board`).

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

from sweep.groups.board import BoardModel, board_figures
from sweep.runtimes import cortex_m
from sweep.runtimes import tflm as mcu
from sweep.runtimes.bundle import write_bundle
from sweep.settings import above, at_least, one_of, plain_name, setting

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
        bundle_dir: Path | None = None,
    ) -> TargetResult:
        """What this target adds to the desktop measurements (nothing, by default);
        deployment files, if any, go to ``bundle_dir``."""
        return TargetResult()


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
    ``cpu``, ``clock_mhz``, ``cpi`` and ``active_power_mw`` (with their sources in
    the YAML) turn the emulated instruction count into board estimates; ``emulate``
    runs the Cortex-M build on ``emulate_images`` test images.
    """

    name: str = setting(dataclasses.MISSING, plain_name())
    flash_kb: int = setting(dataclasses.MISSING, at_least(1))
    ram_kb: int = setting(dataclasses.MISSING, at_least(1))
    cpu: str = setting(dataclasses.MISSING, one_of(*cortex_m.CPUS))
    clock_mhz: float = setting(dataclasses.MISSING, above(0))
    runtime: str = setting("tflite_micro", one_of(*RUNTIMES))
    cpi: float = setting(1.0, above(0))
    cpi_source: str = ""
    active_power_mw: float | None = setting(None, above(0))
    power_source: str = ""
    emulate: bool = True
    emulate_images: int = setting(10, at_least(1))
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
        bundle_dir: Path | None = None,
    ) -> TargetResult:
        """Probe ``model`` on tflite-micro, check it against this board, and write and
        emulate its bundle in ``bundle_dir`` (only for a model that runs).

        Metrics always present: ``mcu_runs``, ``flash_bytes_needed``,
        ``fits_flash``, ``fits_target``. When the model runs, also
        ``arena_bytes`` (= ``ram_bytes_needed``), ``mcu_arena_reported_bytes``,
        ``fits_ram``, ``mcu_latency_median_us`` (host reference kernels: a
        proxy), ``mcu_eval_us_per_image``, ``mcu_accuracy`` and, given
        ``desktop_accuracy``, ``mcu_accuracy_gap_pp`` and ``mcu_parity_ok``.
        Tags: ``mcu_reason`` (why it does not run), ``mcu_fit_reason`` (why it
        does not fit this board). With ``bundle_dir``, the emulator's figures too
        (:func:`sweep.groups.board.board_figures`).
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
        if bundle_dir is not None and report.runs:
            write_bundle(model, bundle_dir, arena_bytes=report.arena_bytes)
            if self.emulate and report.inputs is not None and len(report.inputs):
                n = min(self.emulate_images, len(report.inputs))
                emulated, why = board_figures(
                    self.board, bundle_dir, report.inputs[:n], report.predictions[:n]
                )
                metrics.update(emulated)
                tags.update(why)
        log.debug("target %s: %s %s", self.name, metrics, tags)
        return TargetResult(metrics=metrics, tags=tags, report=report)

    @property
    def board(self) -> BoardModel:
        return BoardModel(self.cpu, self.clock_mhz, self.cpi, self.active_power_mw)
