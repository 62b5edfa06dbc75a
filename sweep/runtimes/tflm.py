"""Microcontroller facts about a ``.tflite`` model, found by the real runtime.

A sequence is only deployable to a microcontroller if the microcontroller
runtime (tflite-micro, "TFLM") accepts it, and only on a board whose flash holds
the model and whose RAM holds the tensor arena. Nobody should have to guess
either: this module asks TFLM itself, through its Python interpreter (the same
C++ kernels and allocator that run on the device, built for the host).

What is measured and how:

- ``runs``/``reason``: load, allocate and invoke once. TFLM reports *why* a model
  fails (e.g. ``Input type: FLOAT32 with filter type: INT8 not supported.``)
  only through ``MicroPrintf`` on the C++ side, i.e. on file descriptor 2; the
  Python exception just says ``TFLM failed to allocate tensors``. So the file
  descriptors are redirected to a temporary file around every runtime call and
  the runtime's own lines become the reason.
- ``arena_bytes``: the smallest ``arena_size`` with which the model allocates
  AND invokes, by binary search over fresh interpreters, exact to 1 byte
  (:data:`ARENA_GRANULARITY_BYTES`) for a 16-byte-aligned arena (the host's
  ``new[]`` gives 16-byte alignment; declare the device arena ``alignas(16)``).
  The Python API has no ``arena_used_bytes()``; the recording allocator's
  ``print_allocations()`` total is parsed into ``arena_reported_bytes`` and
  cross-checked. The figure is for a 64-bit host build using the recording
  allocator; a 32-bit Cortex-M build has smaller runtime structs and needs at
  most this.
- ``latency_median_us``: median of single-image ``invoke()`` calls on the HOST
  with TFLM's reference kernels. It is a proxy for ranking sequences, not a
  device figure: real boards are 10-1000x slower, optimized kernels (CMSIS-NN)
  much faster than reference ones.
- ``accuracy``: argmax accuracy over the given images, run through TFLM one
  image at a time (``eval_us_per_image`` says what that costs: ~0.2-0.4 ms per
  image for the reference CNN, so 10,000 test images take a few seconds).

All of it runs in a child process with limits (:mod:`sweep.runtimes.isolated`): a model
that crashes the runtime, loops forever or asks for too much memory is that model's
verdict (``runs=False`` and the reason), never the caller's end. The time allowed is
derived from the work: :func:`~sweep.runtimes.isolated.first_step_seconds` to load,
allocate and invoke once, then, timed by that first invoke, the arena search, the
latency repeats and one invoke per image, several times over
(:func:`sweep.runtimes.isolated.work_seconds`); 30 min at most.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sweep.runtimes.isolated import (
    RuntimeCrashed,
    allow,
    call_isolated,
    first_step_seconds,
    stopped_reason,
    work_seconds,
)
from sweep.runtimes.tensors import to_model_input

log = logging.getLogger(__name__)

ARENA_GRANULARITY_BYTES = 1
"""Resolution of the arena search: the minimum is exact to the byte."""

MAX_ARENA_BYTES = 64 * 1024 * 1024
"""Arena used to decide whether a model runs at all; far above any MCU's RAM."""

ARENA_SEARCH_STEPS = MAX_ARENA_BYTES.bit_length() + 1
"""Interpreters the arena search makes at most (a binary search down to one byte)."""

_REASON_MAX_CHARS = 2000
_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")


@dataclass
class McuReport:
    """What tflite-micro says about one model (see the module docstring)."""

    runs: bool
    reason: str = ""
    arena_bytes: int | None = None
    arena_reported_bytes: int | None = None
    latency_median_us: float | None = None
    accuracy: float | None = None
    eval_us_per_image: float | None = None
    n_images: int = 0
    predictions: np.ndarray | None = None  # argmax class per image, as tflite-micro ran it
    inputs: np.ndarray | None = None  # the images as the model's input tensor, (N, 1, ...)


@contextlib.contextmanager
def _capture_fds() -> Iterator[list[str]]:
    """Collect what C/C++ code writes to fds 1 and 2 while the block runs.

    The list yielded is filled when the block exits. Anything else the process
    writes to those fds meanwhile (other threads) is captured too, so keep the
    block short.
    """
    lines: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as tmp:
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            yield lines
        finally:
            with contextlib.suppress(Exception):
                ctypes.CDLL(None).fflush(None)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def _interpreter(model: bytes, arena_size: int):  # -> tflite_micro runtime.Interpreter
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena_size)


def _zero_input(interp) -> np.ndarray:
    details = interp.get_input_details(0)
    return np.zeros(tuple(details["shape"]), dtype=details["dtype"])


def runs_with_arena(model: bytes, arena_size: int) -> bool:
    """True if TFLM allocates and invokes ``model`` with exactly this arena.

    The runtime's complaints about a too-small arena are swallowed.
    """
    with _capture_fds():
        try:
            interp = _interpreter(model, arena_size)
            interp.set_input(_zero_input(interp), 0)
            interp.invoke()
        except MemoryError:
            raise  # over the child's memory limit: its own verdict
        except Exception:  # whatever the runtime raises on this model: it does not run
            return False
    return True


def minimal_arena(model: bytes, upper: int) -> int:
    """Smallest arena (to :data:`ARENA_GRANULARITY_BYTES`) that allocates and invokes.

    ``upper`` must be an arena that works. Relies on "works" being monotonic in
    the arena size, which holds for TFLM's single-arena allocator.
    """
    lo, hi = 0, upper  # lo fails (nothing fits in 0 bytes), hi works
    while hi - lo > ARENA_GRANULARITY_BYTES:
        mid = (lo + hi) // 2
        if runs_with_arena(model, mid):
            hi = mid
        else:
            lo = mid
    return hi


def _reason(lines: list[str], error: Exception) -> str:
    """The runtime's own lines first (they say why), then the Python error."""
    seen: list[str] = []
    for line in lines:
        if line not in seen and not line.startswith("[RecordingMicroAllocator]"):
            seen.append(line)
    if isinstance(error, RuntimeError | ValueError):
        seen.append(str(error) or type(error).__name__)
    else:  # not the runtime's own complaint: say what broke
        kind = type(error)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        seen.append(f"{name}: {error}")
    return "; ".join(seen)[:_REASON_MAX_CHARS]


def _as_model_input(x: np.ndarray, details: dict) -> np.ndarray:
    """Images as tflite-micro's input 0 wants them: one batch-1 tensor per image."""
    q = details["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero_point = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    batch = to_model_input(x, details["shape"][1:], details["dtype"], scale, zero_point)
    return batch[:, np.newaxis]


def _dequantize(out: np.ndarray, details: dict) -> np.ndarray:
    q = details["quantization_parameters"]
    if np.dtype(details["dtype"]).kind == "f" or not len(q["scales"]):
        return out.astype(np.float32)
    return (out.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]


def _arena_reported(interp) -> int | None:
    """The recording allocator's own total, read from ``print_allocations()``."""
    with _capture_fds() as lines:
        interp.print_allocations()
    for line in lines:
        match = _TOTAL_RE.search(line)
        if match:
            return int(match.group(1))
    return None


def probe(model: bytes, x: np.ndarray, y: np.ndarray, *, latency_repeats: int = 50) -> McuReport:
    """Run ``model`` on tflite-micro: does it run, in how small an arena, how well.

    ``x``: float32 images in [0, 1], shape (N, H, W) or (N, H, W, C); ``y``:
    integer labels (or one-hot). Only input 0 and output 0 are used. The runtime
    runs in a child process with limits: a model that crashes it, overruns its time or
    its memory does not run, and the reason says which.
    """
    try:
        report = call_isolated(_probe, bytes(model), x, y, latency_repeats=latency_repeats)
    except RuntimeCrashed as stopped:
        report = McuReport(runs=False, reason=stopped_reason(stopped, "tflite-micro"))
    if not report.runs:
        log.info("tflite-micro refuses the model: %s", report.reason)
        return report
    reported = report.arena_reported_bytes
    if reported is not None and reported != report.arena_bytes:
        log.warning(
            "arena: search found %d bytes, the interpreter reports %d", report.arena_bytes, reported
        )
    log.info(
        "tflite-micro runs it: arena %d B, accuracy %.2f%%, %.0f µs per image (host proxy)",
        report.arena_bytes,
        100 * (report.accuracy or 0),
        report.latency_median_us or 0,
    )
    return report


def _probe(model: bytes, x: np.ndarray, y: np.ndarray, *, latency_repeats: int) -> McuReport:
    """:func:`probe`'s work, in the child process (its log lines would be lost there)."""
    from tflite_micro.python.tflite_micro import runtime  # noqa: F401  (imported before timing)

    allow(first_step_seconds())
    started = time.perf_counter()
    with _capture_fds() as lines:
        try:
            interp = _interpreter(model, MAX_ARENA_BYTES)
            interp.set_input(_zero_input(interp), 0)
            interp.invoke()
            error = None
        except MemoryError:
            raise  # over the child's memory limit: its own verdict
        except Exception as exc:  # the runtime's Python layer on a damaged model, too
            error = exc
    if error is not None:
        return McuReport(runs=False, reason=_reason(lines, error))
    # One load + allocate + invoke, timed: every later step costs at most that.
    each = time.perf_counter() - started
    allow(work_seconds(ARENA_SEARCH_STEPS + 3 + latency_repeats + len(x), each))
    try:
        return _measure(model, x, y, latency_repeats, interp)
    except MemoryError:
        raise
    except Exception as error:  # a damaged model may run once and break the runtime later
        return McuReport(runs=False, reason=f"failed after running it once: {_reason([], error)}")


def _measure(model: bytes, x: np.ndarray, y: np.ndarray, latency_repeats: int, interp) -> McuReport:
    """Arena, latency and accuracy of a model that ran once (in ``interp``)."""
    reported = _arena_reported(interp)
    upper = reported if reported and runs_with_arena(model, reported) else MAX_ARENA_BYTES
    arena = minimal_arena(model, upper)

    # Everything below runs in the minimal arena: proof that it suffices.
    interp = _interpreter(model, arena)
    in_details, out_details = interp.get_input_details(0), interp.get_output_details(0)
    xs = _as_model_input(x, in_details)
    sample = xs[0] if len(xs) else _zero_input(interp)
    interp.set_input(sample, 0)
    interp.invoke()  # warm-up
    times = []
    for _ in range(max(1, latency_repeats)):
        interp.set_input(sample, 0)
        start = time.perf_counter_ns()
        interp.invoke()
        times.append(time.perf_counter_ns() - start)
    latency_us = float(np.median(times)) / 1e3

    accuracy = per_image = preds = None
    if len(xs):
        labels = np.asarray(y)
        labels = labels.argmax(axis=1) if labels.ndim == 2 else labels.reshape(-1)
        preds = np.empty(len(xs), dtype=np.int64)
        start = time.perf_counter()
        for i in range(len(xs)):
            interp.set_input(xs[i], 0)
            interp.invoke()
            preds[i] = int(np.argmax(_dequantize(interp.get_output(0), out_details)))
        per_image = (time.perf_counter() - start) / len(xs) * 1e6
        accuracy = float(np.mean(preds == labels))

    return McuReport(
        runs=True,
        arena_bytes=arena,
        arena_reported_bytes=reported,
        latency_median_us=latency_us,
        accuracy=accuracy,
        eval_us_per_image=per_image,
        n_images=len(xs),
        predictions=preds,
        inputs=xs,
    )


def parity(desktop_accuracy: float, mcu_accuracy: float, tolerance_pp: float = 0.5) -> bool:
    """True if the MCU runtime's accuracy is within ``tolerance_pp`` percentage
    points of the desktop runtime's (both as fractions in [0, 1]).

    The two runtimes use different kernels (XNNPACK/optimized vs reference), so
    float rounding may flip a few argmaxes; a bigger gap means a conversion or
    input-quantization bug, which is what this check is for.
    """
    for name, value in (("desktop_accuracy", desktop_accuracy), ("mcu_accuracy", mcu_accuracy)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
    if tolerance_pp < 0:
        raise ValueError(f"tolerance_pp must be >= 0, got {tolerance_pp}")
    return abs(desktop_accuracy - mcu_accuracy) * 100.0 <= tolerance_pp + 1e-9


def fits(model_bytes: int, arena_bytes: int, flash_bytes: int, ram_bytes: int) -> tuple[bool, str]:
    """Whether the model (in flash) and the arena (in RAM) fit a board.

    Counts only the model and the arena: the runtime's code, the application
    and the stack need room too, so a "fits" close to the limit is optimistic.
    The reason is empty when it fits.
    """
    problems = []
    if model_bytes > flash_bytes:
        problems.append(f"model needs {model_bytes} B of flash, board has {flash_bytes} B")
    if arena_bytes > ram_bytes:
        problems.append(f"arena needs {arena_bytes} B of RAM, board has {ram_bytes} B")
    return (not problems, "; ".join(problems))
