"""The stages of a job on real data: train, pre-train, convert, measure, cache."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.config import QUANTIZERS

from sweep.run_settings import MeasureSettings
from sweep.runtimes.flatbuffer import operator_names
from sweep.runtimes.litert import latency, predict_tflite, size_metrics
from sweep.stores.stage_cache import StageCache

EXPECTED_IO = {
    "none": np.float32,
    "dynamic_range": np.float32,
    "float16": np.float32,
    "int8": np.int8,
    "int8_fallback": np.float32,
    "int16x8": np.int16,
}


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_quantizer_io_types_and_accuracy(converted, mnist_small, quantizer) -> None:
    from sweep.runtimes.litert import make_interpreter

    interpreter = make_interpreter(converted[quantizer])
    assert interpreter.get_input_details()[0]["dtype"] == EXPECTED_IO[quantizer]
    assert interpreter.get_output_details()[0]["dtype"] == EXPECTED_IO[quantizer]
    predictions, seconds = predict_tflite(converted[quantizer], mnist_small.x_test)
    accuracy = float(np.mean(predictions == mnist_small.y_test))
    assert accuracy > 0.85, f"{quantizer}: {accuracy:.3f} on 1,000 real MNIST test images"
    assert seconds > 0


def test_quantized_models_stay_close_to_float(converted, mnist_small) -> None:
    reference, _ = predict_tflite(converted["none"], mnist_small.x_test)
    for name in ("dynamic_range", "float16", "int8", "int8_fallback", "int16x8"):
        predictions, _ = predict_tflite(converted[name], mnist_small.x_test)
        assert np.mean(predictions == reference) > 0.97, name


def test_sizes_follow_weight_precision(converted) -> None:
    sizes = {name: size_metrics(model)["tflite_bytes"] for name, model in converted.items()}
    # 20,410 parameters: ~4 bytes each in float32, ~2 in float16, ~1 in int8.
    assert sizes["none"] > 80_000
    assert 40_000 < sizes["float16"] < 0.6 * sizes["none"]
    assert sizes["int8"] < 0.35 * sizes["none"]
    assert sizes["dynamic_range"] < 0.35 * sizes["none"]
    assert {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"} <= set(
        operator_names(converted["int8"])
    )


def test_int8_fallback_is_float_io_around_int8_kernels(converted) -> None:
    """The study's "integer with float fallback": float32 in and out, int8 inside."""
    from sweep.runtimes.flatbuffer import weight_arrays
    from sweep.runtimes.litert import make_interpreter

    model = converted["int8_fallback"]
    interpreter = make_interpreter(model)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    ops = operator_names(model)
    assert {"QUANTIZE", "DEQUANTIZE", "CONV_2D", "FULLY_CONNECTED"} <= set(ops)
    kernels = weight_arrays(model)  # the constant kernels of rank >= 2
    assert kernels and all(w.dtype == np.int8 for w in kernels)
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = {op["op_name"]: op for op in interpreter._get_ops_details()}
    assert dtypes[ops["CONV_2D"]["inputs"][0]] == np.int8  # int8 activations inside
    assert dtypes[ops["QUANTIZE"]["inputs"][0]] == np.float32
    float32_size = size_metrics(converted["none"])["tflite_bytes"]
    assert size_metrics(model)["tflite_bytes"] < 0.35 * float32_size


class InvokeClock:
    """A clock that moves only when the model is invoked, by ``step_ns`` each time: the
    latency code's arithmetic checked exactly, whatever the machine's speed or load."""

    def __init__(self, step_ns: int) -> None:
        self.step_ns, self.now_ns, self.invokes = step_ns, 0, 0

    def tick(self) -> None:
        self.now_ns += self.step_ns
        self.invokes += 1

    def perf_counter(self) -> float:
        return self.now_ns / 1e9

    def perf_counter_ns(self) -> int:
        return self.now_ns


@pytest.mark.parametrize("window_ms", [20, 2])
def test_latency_windows_are_sized_by_the_warm_up(
    converted, mnist_small, monkeypatch: pytest.MonkeyPatch, window_ms: int
) -> None:
    """The real interpreter runs the real model; time is what the invokes took at 7 µs each.
    The warm-up sizes each window to ``window_ms``: invokes × per-invoke time fills it to
    one invoke, every window times that same count, and the figures are per invoke."""
    from types import SimpleNamespace

    from sweep.runtimes import litert

    clock = InvokeClock(step_ns=7_000)
    real = litert.make_interpreter

    def clocked(tflite: bytes, num_threads: int = 1):
        interpreter = real(tflite, num_threads)
        invoke = interpreter.invoke

        def timed() -> None:
            invoke()
            clock.tick()

        interpreter.invoke = timed
        return interpreter

    monkeypatch.setattr(litert, "make_interpreter", clocked)
    monkeypatch.setattr(litert, "time", SimpleNamespace(
        perf_counter=clock.perf_counter, perf_counter_ns=clock.perf_counter_ns))  # fmt: skip
    settings = MeasureSettings(windows=5, window_ms=window_ms, warmup_ms=50)
    figures = latency(converted["int8"], mnist_small.x_test[0], settings)
    per_window = figures["latency_invokes_per_window"]
    assert figures["latency_median_us"] == figures["latency_p10_us"] == 7.0
    assert figures["latency_p90_us"] == 7.0
    assert abs(per_window * 7 - window_ms * 1000) <= 7  # the window, to one invoke
    warmup = 7_150  # batches of 10 until 50 ms have passed: 715 × 70 µs = 50.05 ms
    assert clock.invokes == warmup + 5 * per_window
    assert figures["latency_windows"] == 5 and figures["latency_threads"] == 1


def test_latency_on_the_real_clock_is_a_spread_of_windows(converted, mnist_small) -> None:
    settings = MeasureSettings(windows=5, window_ms=20, warmup_ms=50)
    figures = latency(converted["int8"], mnist_small.x_test[0], settings)
    assert 0 < figures["latency_p10_us"] <= figures["latency_median_us"]
    assert figures["latency_median_us"] <= figures["latency_p90_us"]
    assert figures["latency_invokes_per_window"] >= 1
    assert figures["latency_invokes_per_window"] == int(figures["latency_invokes_per_window"])
    assert figures["latency_windows"] == 5 and figures["latency_threads"] == 1


def test_pruning_reaches_final_sparsity_and_gzips_smaller(trained_cnn, mnist_small) -> None:
    from sweep.backend import keras
    from sweep.groups.pretrain import Pruning
    from sweep.groups.quantize import Float32
    from sweep.groups.train import FitTrainer

    model = keras.models.clone_model(trained_cnn)
    model.set_weights(trained_cnn.get_weights())
    pruned = Pruning(fine_tune_epochs=1).apply(
        model, mnist_small.x_train, mnist_small.y_train, FitTrainer(epochs=1)
    )
    pruned_file, dense_file = Float32().convert(pruned, None), Float32().convert(trained_cnn, None)
    pruned_size, dense_size = size_metrics(pruned_file), size_metrics(dense_file)
    assert pruned_size["sparsity"] == pytest.approx(0.8, abs=0.02)
    assert dense_size["sparsity"] < 0.01
    # Zeros are still stored: same file size, much smaller once compressed.
    assert pruned_size["tflite_bytes"] == pytest.approx(dense_size["tflite_bytes"], rel=0.01)
    assert pruned_size["tflite_gzip_bytes"] < 0.7 * dense_size["tflite_gzip_bytes"]


def test_graph_trainer_learns_and_qat_converts_to_int8(mnist_small) -> None:
    from sweep.backend import keras
    from sweep.groups.model import ConvNet
    from sweep.groups.pretrain import QuantizationAware
    from sweep.groups.quantize import FullInteger
    from sweep.groups.train import GraphTrainer

    keras.utils.set_random_seed(1)
    trainer = GraphTrainer(epochs=2, grappler={"constant_folding": True, "remapping": False})
    model = ConvNet(separable=True).build(mnist_small.input_shape, mnist_small.num_classes)
    history = trainer.fit(model, mnist_small.x_train, mnist_small.y_train)
    assert history[-1]["loss"] < history[0]["loss"]
    assert any(isinstance(layer, keras.layers.SeparableConv2D) for layer in model.layers)
    aware = QuantizationAware().apply(model, mnist_small.x_train, mnist_small.y_train, trainer)
    tflite = FullInteger(calibration_samples=50).convert(aware, mnist_small.x_train)
    predictions, _ = predict_tflite(tflite, mnist_small.x_test)
    assert np.mean(predictions == mnist_small.y_test) > 0.7


def _tiny_architecture():
    from sweep.backend import keras

    return keras.Sequential([keras.layers.InputLayer((4,)), keras.layers.Dense(2)])


def _tiny_build():
    model = _tiny_architecture()
    model.compile("adam", "mse")
    return model, {"seconds": 1.5}


def test_cache_builds_once_then_reuses(tmp_path) -> None:
    cache = StageCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return _tiny_build()

    first = cache.get_or_build("train", {"a": 1}, build, _tiny_architecture)
    second = cache.get_or_build("train", {"a": 1}, build, _tiny_architecture)
    other = cache.get_or_build("train", {"a": 2}, build, _tiny_architecture)
    assert (first.hit, second.hit, other.hit) == (False, True, False)
    assert len(calls) == 2 and second.info == {"seconds": 1.5}
    np.testing.assert_array_equal(first.model.get_weights()[0], second.model.get_weights()[0])


def test_damaged_cache_entry_is_rebuilt(tmp_path) -> None:
    cache = StageCache(tmp_path)
    built = cache.get_or_build("train", {"a": 1}, _tiny_build, _tiny_architecture)
    data = bytearray(built.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    built.path.write_bytes(bytes(data))
    again = cache.get_or_build("train", {"a": 1}, _tiny_build, _tiny_architecture)
    assert not again.hit and again.path.exists()
    assert cache.get_or_build("train", {"a": 1}, _tiny_build, _tiny_architecture).hit


def test_disabled_cache_always_rebuilds(tmp_path) -> None:
    cache = StageCache(tmp_path, enabled=False)
    assert not cache.get_or_build("train", {"a": 1}, _tiny_build, _tiny_architecture).hit
    assert not cache.get_or_build("train", {"a": 1}, _tiny_build, _tiny_architecture).hit


@pytest.mark.parametrize("trainer", ["fit", "graph"])
def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_training(mnist_small, trainer) -> None:
    """A Ctrl-C that lands in a ``__del__`` (TensorFlow deletes each epoch's iterator as the
    next epoch starts) is "ignored" by Python; the trainer raises it at the next epoch's
    boundary instead of training on to the end of the schedule."""
    import os
    import signal
    import threading

    from sweep.backend import keras
    from sweep.groups.train import FitTrainer, GraphTrainer

    assert threading.current_thread() is threading.main_thread()  # where signals are handled

    class SignalledInAFinalizer:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # Python runs the signal's handler here, inside __del__
                pass

    ended: list[int] = []

    class CtrlCAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ended.append(epoch)
            if epoch == 1:
                SignalledInAFinalizer()  # made and deleted at once

    model = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28)), keras.layers.Dense(10)])
    chosen = FitTrainer(epochs=40) if trainer == "fit" else GraphTrainer(epochs=40)
    # Python's own handler, as in a terminal: pytest may run with SIGINT ignored (`time`, `&`).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            chosen.fit(model, mnist_small.x_train[:64], mnist_small.y_train[:64],
                       callbacks=[CtrlCAtSecondEpoch()])  # fmt: skip
        assert ended == [0, 1]  # stopped as the third epoch began
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)


TRAIN_AND_HASH = """
import hashlib, sys
from sweep.backend import keras, loaded
loaded("keras")
if sys.argv[1] == "spinning":  # TensorFlow's own default, set before its runtime starts
    from tensorflow.python.eager import context
    context.context()._config.experimental.disable_thread_spinning = False
from sweep.groups.dataset import ImageDataset
from sweep.groups.model import ConvNet
from sweep.groups.train import FitTrainer
data = ImageDataset(name="mnist", path="tests/data/mnist", train_limit=1000).load()
keras.utils.set_random_seed(0)
model = ConvNet().build(data.input_shape, data.num_classes)
FitTrainer(epochs=2).fit(model, data.x_train, data.y_train)
from tensorflow.python.eager import context
print(context.context().config.experimental.disable_thread_spinning,
      hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""


def test_tensorflow_pools_sleep_and_train_the_weights_spinning_ones_train() -> None:
    """``sweep.backend`` starts TensorFlow with sleeping thread pools (less CPU beside
    another TensorFlow process: benchmarks/thread_spinning.py); what a job trains must
    not change, so a process with TensorFlow's spinning pools trains the same weights.
    Fresh processes: whatever this one ran first may have started TensorFlow already."""
    import subprocess
    import sys

    from helpers.config import ROOT
    from helpers.processes import SAFETY_NET_SECONDS

    children = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_AND_HASH, mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("spinning", "sleeping")
    ]
    found = []
    for child in children:
        out, err = child.communicate(timeout=SAFETY_NET_SECONDS)
        assert child.returncode == 0, err[-3000:]
        found.append(out.split()[-2:])
    (spinning_off, spinning_hash), (sleeping_off, sleeping_hash) = found
    assert (spinning_off, sleeping_off) == ("False", "True")
    assert spinning_hash == sleeping_hash and len(sleeping_hash) == 64
