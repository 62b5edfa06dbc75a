"""Convert a pre-trained model and measure it: everything the results cache keeps.

What is measured here (sizes, accuracy through the desktop runtime, the target's
checks) is deterministic for a given model, data, quantizer and target, so it is
kept by content under :func:`result_key`. The key's code part is the import closure
of this module, of the quantizer, of the target and of its checks
(:func:`sweep.stores.fingerprints.code_fingerprint`): editing any code that
converts or measures invalidates the results, editing the ranking does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.checks import ModelUnderTest
from sweep.runtimes.litert import predict_tflite, size_metrics
from sweep.stores.fingerprints import code_fingerprint, digest
from sweep.stores.result_cache import runtime_versions

if TYPE_CHECKING:
    from sweep.groups.dataset import Dataset
    from sweep.pipeline.components import Components
    from sweep.pipeline.sequence import Phases


def result_key(weights_sha256: str, data_fingerprint: str, parts: Components) -> str:
    """The content key of one sequence's results after pre-training."""
    target = parts.target
    material = {
        "weights": weights_sha256,
        "data": data_fingerprint,
        "quantize": parts.settings["quantize"],
        "target": parts.settings["target"],
        "code": code_fingerprint(
            parts.quantize, target, *target.check_objects(), modules=[__name__]
        ),
        "checks": target.cache_material(),
        "versions": runtime_versions(),
    }
    return digest(material)[:24]


def convert_and_measure(
    parts: Components,
    data: Dataset,
    fresh_model: Callable[[], Any],
    keras_accuracy: float,
    out_dir: Path,
    phases: Phases,
) -> tuple[dict[str, float], dict[str, str], list[Path]]:
    """The converted model's deterministic metrics, the checks' tags and the files they
    wrote under ``out_dir`` (besides ``model.tflite`` and ``predictions.npy``).

    ``fresh_model`` makes a new model holding the pre-trained weights. It is called in a
    new Keras session: TFLite names a model's tensors after its Keras names, which Keras
    numbers per process (``sequential_12/conv2d_37``), so converting the model as the job
    happened to hold it gave the same weights a few bytes more or less depending on the
    jobs before it in the process and on whether its stages came from the cache (32 B of
    the reference CNN's 24 KB in int8): two launchers, or a resumed sweep, disagreed on a
    sequence's size."""
    from sweep.backend import keras

    with phases("convert"):
        keras.backend.clear_session()
        model = fresh_model()
        started = time.perf_counter()
        tflite = parts.quantize.convert(model, data.x_train)
        convert_seconds = time.perf_counter() - started
        (out_dir / "model.tflite").write_bytes(tflite)
    with phases("accuracy"):
        predictions, test_set_seconds = predict_tflite(
            tflite, data.x_test, parts.measure.num_threads
        )
        np.save(out_dir / "predictions.npy", predictions, allow_pickle=False)
    metrics = {
        **size_metrics(tflite),
        "keras_accuracy": float(keras_accuracy),
        "tflite_accuracy": float(np.mean(predictions == data.y_test)),
        "test_examples": float(len(data.y_test)),
        "test_set_seconds": test_set_seconds,
        "convert_seconds": convert_seconds,
    }
    with phases("microcontroller"):
        found = parts.target.measure(
            ModelUnderTest(tflite, data.x_test, data.y_test, out_dir, metrics["tflite_accuracy"])
        )
    metrics.update(found.metrics)
    return metrics, found.tags, found.files
