"""Check ``tflite_micro``: does the model run on the board's runtime, and does it fit?

A sequence that wins on the desktop may not run on a microcontroller at all
(dynamic-range and float16 models are refused by tflite-micro) or may not fit the
board. This check asks tflite-micro itself (:func:`sweep.runtimes.tflm.probe`, in a
child process) whether the model runs, in how small an arena, how accurately, and
whether the model (flash) and the arena (RAM) fit the board; a model that runs gets
its deploy ``bundle/`` (:mod:`sweep.runtimes.bundle`).

Reasons are tags rather than metrics because they are the runtime's own words; a
metric that cannot be measured (no arena when the model does not run) is left out
rather than logged as a sentinel number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.checks.base import Check, Measurement, ModelUnderTest
from sweep.metrics import DETERMINISTIC, MCU, PROPORTION, TIMING, Metric
from sweep.stores.fingerprints import package_versions

if TYPE_CHECKING:
    from sweep.groups.target import Microcontroller

REPORT = "tflm_report"
"""Key of tflite-micro's full report in :attr:`Measurement.extras` (later checks read it)."""
BUNDLE = "bundle"

_D, _P, _T = DETERMINISTIC, PROPORTION, TIMING


def _row(name, unit, better, kind, heading, objective=None, **extra) -> Metric:
    return Metric(name, unit, better, kind, heading, objective, MCU, **extra)


class TfliteMicroCheck(Check):
    """tflite-micro on this host: runs? arena, fit, accuracy, and a host-proxy latency."""

    name = "tflite_micro"
    needs_board = True
    rows = (
        _row("flash_bytes_needed", "B", "lower", _D, "smallest flash", "smallest",
             shown="flash {:,.0f} B"),
        _row("mcu_latency_median_us", "µs", "lower", _T, "fastest on tflite-micro", "fastest",
             preference=1),
        _row("ram_bytes_needed", "B", "lower", _D, "least RAM", "least_ram",
             shown="arena {:,.0f} B"),
        _row("mcu_runs", "", "higher", _D, "1 when tflite-micro runs the model"),
        _row("arena_bytes", "B", "lower", _D, "smallest tensor arena"),
        _row("mcu_arena_reported_bytes", "B", "lower", _D, "arena reported"),
        _row("fits_flash", "", "higher", _D, "1 when the model fits the flash"),
        _row("fits_ram", "", "higher", _D, "1 when the arena fits the RAM"),
        _row("fits_target", "", "higher", _D, "1 when it runs and fits"),
        _row("mcu_eval_us_per_image", "µs", "lower", _T, "tflite-micro µs per image"),
        _row("mcu_accuracy", "", "higher", _P, "accuracy through tflite-micro"),
        _row("mcu_accuracy_gap_pp", "pp", "lower", _D, "desktop vs micro accuracy"),
        _row("mcu_parity_ok", "", "higher", _D, "1 when the gap is within tolerance"),
    )  # fmt: skip

    def measure(
        self, model: ModelUnderTest, target: Microcontroller, earlier: Measurement
    ) -> Measurement:
        """Metrics always present: ``mcu_runs``, ``flash_bytes_needed``, ``fits_flash``,
        ``fits_target``. When the model runs, also ``arena_bytes`` (= ``ram_bytes_needed``),
        ``mcu_arena_reported_bytes``, ``fits_ram``, ``mcu_latency_median_us`` (host
        reference kernels: a proxy) and, with labels, ``mcu_eval_us_per_image``,
        ``mcu_accuracy`` and (given the desktop accuracy) ``mcu_accuracy_gap_pp`` and
        ``mcu_parity_ok``. Tags: ``mcu_reason`` (why it does not run) and
        ``mcu_fit_reason`` (why it does not fit this board)."""
        from sweep.runtimes import tflm
        from sweep.runtimes.bundle import write_bundle

        x = model.x if target.micro_accuracy else model.x[: target.emulate_images]
        labels = model.y if model.y is not None else np.zeros(len(model.x), dtype=np.int64)
        report = tflm.probe(
            model.tflite, x, labels[: len(x)], latency_repeats=target.latency_repeats
        )
        size = len(model.tflite)
        metrics: dict[str, float] = {
            "mcu_runs": float(report.runs),
            "flash_bytes_needed": float(size),
            "fits_flash": float(size <= target.flash_bytes),
        }
        tags: dict[str, str] = {}
        found = Measurement(metrics, tags, extras={REPORT: report})
        if not (report.runs and report.arena_bytes is not None):
            metrics["fits_target"] = 0.0
            tags["mcu_reason"] = report.reason
            tags["mcu_fit_reason"] = f"{target.name}: does not run on {target.runtime}"
            return found
        ok, why = tflm.fits(size, report.arena_bytes, target.flash_bytes, target.ram_bytes)
        metrics.update(
            arena_bytes=float(report.arena_bytes),
            ram_bytes_needed=float(report.arena_bytes),
            fits_ram=float(report.arena_bytes <= target.ram_bytes),
            fits_target=float(ok),
        )
        if report.arena_reported_bytes is not None:
            metrics["mcu_arena_reported_bytes"] = float(report.arena_reported_bytes)
        if report.latency_median_us is not None:
            metrics["mcu_latency_median_us"] = report.latency_median_us
        if model.y is not None and target.micro_accuracy:
            metrics.update(self._accuracy(report, model, target))
        if why:
            tags["mcu_fit_reason"] = f"{target.name}: {why}"
        bundle = model.out_dir / BUNDLE
        write_bundle(model.tflite, bundle, arena_bytes=report.arena_bytes)
        found.files.append(bundle)
        return found

    @staticmethod
    def _accuracy(report: Any, model: ModelUnderTest, target: Microcontroller) -> dict:
        from sweep.runtimes import tflm

        out: dict[str, float] = {}
        if report.eval_us_per_image is not None:
            out["mcu_eval_us_per_image"] = report.eval_us_per_image
        if report.accuracy is None:
            return out
        out["mcu_accuracy"] = report.accuracy
        if model.desktop_accuracy is not None:
            gap = abs(model.desktop_accuracy - report.accuracy) * 100.0
            out["mcu_accuracy_gap_pp"] = gap
            ok = tflm.parity(model.desktop_accuracy, report.accuracy, target.parity_tolerance_pp)
            out["mcu_parity_ok"] = float(ok)
        return out

    def exclusion(self, metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        if metrics.get("mcu_runs") != 1.0:
            return "does not run on tflite-micro: " + tags.get("mcu_reason", "no reason given")
        if metrics.get("fits_target") != 1.0:
            return "does not fit the target: " + tags.get("mcu_fit_reason", "too large")
        return None

    def cache_material(self, target: Microcontroller) -> dict[str, Any]:
        return package_versions(("tflite-micro",))

    def summary(self, metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        fits = "fits" if metrics.get("fits_target") else "does not fit"
        return f"tflite-micro: {'runs' if metrics.get('mcu_runs') else 'refused'}, {fits}"
