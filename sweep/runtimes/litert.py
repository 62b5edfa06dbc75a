"""Measure a converted model the way a device would run it.

Accuracy goes through the LiteRT interpreter one image at a time (as firmware
feeds it), with inputs quantized by the model's own scale and zero point.
Latency is the MLPerf Tiny way: several timed windows of one-image invokes on
one thread after warm-up, reporting the median window and the spread.
"""

from __future__ import annotations

import gzip
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from sweep.quiet import silenced_stderr
from sweep.run_settings import MeasureSettings
from sweep.runtimes.flatbuffer import weight_arrays
from sweep.runtimes.isolated import allow, call_isolated, first_step_seconds, work_seconds
from sweep.runtimes.tensors import to_model_input

LATENCY_METRICS = (
    "latency_median_us",
    "latency_p10_us",
    "latency_p90_us",
    "latency_windows",
    "latency_invokes_per_window",
    "latency_threads",
)
"""What :func:`latency` reports (and all a latency kept for reuse may hold)."""


def make_interpreter(tflite: bytes, num_threads: int = 1) -> Interpreter:
    with silenced_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter = Interpreter(model_content=tflite, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def model_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """Images as the LiteRT input tensor ``detail`` wants them."""
    scale, zero_point = detail["quantization"]
    return to_model_input(images, detail["shape"][1:], detail["dtype"], scale, zero_point)


def size_metrics(tflite: bytes) -> dict[str, float]:
    """File size, gzip size (where pruning's zeros pay off) and weight sparsity."""
    weights = weight_arrays(tflite)
    total = sum(w.size for w in weights)
    nonzero = sum(int(np.count_nonzero(w)) for w in weights)
    return {
        "tflite_bytes": float(len(tflite)),
        "tflite_gzip_bytes": float(len(gzip.compress(tflite, compresslevel=9, mtime=0))),
        "nonzero_weights": float(nonzero),
        "sparsity": 1.0 - nonzero / total if total else 0.0,
    }


def predict_tflite(
    tflite: bytes, images: np.ndarray, num_threads: int = 1
) -> tuple[np.ndarray, float]:
    """Class predictions for every image, one invoke each, and the seconds it took."""
    interpreter = make_interpreter(tflite, num_threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = model_input(images, inp)
    predictions = np.empty(len(batch), dtype=np.int64)
    invoke, set_tensor, get_tensor = (
        interpreter.invoke,
        interpreter.set_tensor,
        interpreter.get_tensor,
    )
    started = time.perf_counter()
    for i in range(len(batch)):
        set_tensor(inp["index"], batch[i : i + 1])
        invoke()
        predictions[i] = int(np.argmax(get_tensor(out["index"])[0]))
    return predictions, time.perf_counter() - started


def predict_in_child(tflite: bytes, images: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """:func:`predict_tflite`'s predictions for a model from elsewhere (``sweep-profile``),
    in a child process with limits: a model that loops forever, crashes LiteRT or wants
    too much memory costs a bounded time and raises
    :class:`~sweep.runtimes.isolated.RuntimeCrashed` (or one of its kinds)."""
    return call_isolated(_predict_within_budget, tflite, images, num_threads)


def _predict_within_budget(tflite: bytes, images: np.ndarray, num_threads: int) -> np.ndarray:
    """In the child: one image first, timed, then the budget of all of them."""
    allow(first_step_seconds())
    started = time.perf_counter()
    predict_tflite(tflite, images[:1], num_threads)
    allow(work_seconds(len(images), time.perf_counter() - started))
    return predict_tflite(tflite, images, num_threads)[0]


def _invoke_for(invoke, seconds: float) -> tuple[int, float]:
    """Invoke repeatedly for about ``seconds``; return the count and the time taken."""
    count, started, deadline = 0, time.perf_counter(), time.perf_counter() + seconds
    while True:
        for _ in range(10):
            invoke()
        count += 10
        now = time.perf_counter()
        if now >= deadline:
            return count, now - started


def latency(tflite: bytes, image: np.ndarray, settings: MeasureSettings) -> dict[str, float]:
    """Median and spread (p10, p90) of per-invoke time over timed windows, in µs.

    The warm-up also calibrates how many invokes fill one window, so every window
    times the same fixed count (no clock reads inside it).
    """
    interpreter = make_interpreter(tflite, settings.num_threads)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], model_input(image[np.newaxis], inp))
    invoke = interpreter.invoke
    count, seconds = _invoke_for(invoke, max(settings.warmup_ms / 1e3, 1e-3))
    per_window = max(1, round(count / seconds * settings.window_ms / 1e3))
    per_invoke = np.empty(settings.windows)
    for w in range(settings.windows):
        started = time.perf_counter_ns()
        for _ in range(per_window):
            invoke()
        per_invoke[w] = (time.perf_counter_ns() - started) / per_window / 1e3
    return {
        "latency_median_us": float(np.median(per_invoke)),
        "latency_p10_us": float(np.percentile(per_invoke, 10)),
        "latency_p90_us": float(np.percentile(per_invoke, 90)),
        "latency_windows": float(settings.windows),
        "latency_invokes_per_window": float(per_window),
        "latency_threads": float(settings.num_threads),
    }
