"""Measure a converted model the way a device would run it.

Accuracy goes through the LiteRT interpreter one image at a time (as firmware
feeds it), with inputs quantized by the model's own scale and zero point.
Latency is the MLPerf Tiny way: several timed windows of one-image invokes on
one thread after warm-up, reporting the median window and the spread.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from sweep.flatbuffer import weight_arrays
from sweep.quiet import silenced_stderr
from sweep.tensors import to_model_input
from sweep.validation import require


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


@dataclass
class LatencySettings:
    """How one-image latency is timed (the ``measure`` block of the config)."""

    windows: int = 20
    invokes_per_window: int = 100
    warmup_invokes: int = 100
    num_threads: int = 1

    def __post_init__(self) -> None:
        for setting in ("windows", "invokes_per_window", "num_threads"):
            value = getattr(self, setting)
            require(value >= 1, f"measure.{setting}", value, "an integer >= 1")
        require(
            self.warmup_invokes >= 0,
            "measure.warmup_invokes",
            self.warmup_invokes,
            "an integer >= 0",
        )


def latency(tflite: bytes, image: np.ndarray, settings: LatencySettings) -> dict[str, float]:
    """Median and spread (p10, p90) of per-invoke time over timed windows, in µs."""
    interpreter = make_interpreter(tflite, settings.num_threads)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], model_input(image[np.newaxis], inp))
    invoke = interpreter.invoke
    for _ in range(settings.warmup_invokes):
        invoke()
    per_invoke = np.empty(settings.windows)
    for w in range(settings.windows):
        started = time.perf_counter_ns()
        for _ in range(settings.invokes_per_window):
            invoke()
        per_invoke[w] = (time.perf_counter_ns() - started) / settings.invokes_per_window / 1e3
    return {
        "latency_median_us": float(np.median(per_invoke)),
        "latency_p10_us": float(np.percentile(per_invoke, 10)),
        "latency_p90_us": float(np.percentile(per_invoke, 90)),
        "latency_windows": float(settings.windows),
        "latency_threads": float(settings.num_threads),
    }
