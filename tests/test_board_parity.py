"""The runner and the footprint against the per-model build they replace, on real models.

The per-model build (``sweep.runtimes.cortex_m.per_model``: the bundle compiled and
linked into its own firmware, every instruction counted) defines the board figures;
``emulate`` (one runner image per CPU, the model written in at run time, the footprint
worked out per operator set) must give the same instruction count, the same flash and
RAM to the byte, the same arena and the same outputs. Real toolchain, real TFLM +
CMSIS-NN, real Unicorn; the reference CNN in float32 and int8 (tests/conftest.py),
the arena-growth path, and the MLPerf Tiny keyword-spotting model when
``../shared/mlperf_tiny`` is there (``benchmarks/board_cost.py`` adds ResNet-8 and
more CPUs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.system import MLPERF_TINY, needs_cortex_m

from sweep.runtimes import tflm
from sweep.runtimes.bundle import write_bundle
from sweep.runtimes.cortex_m import emulate, emulate_per_model
from sweep.runtimes.tensors import to_model_input

CPU = "cortex-m4f"


def model_inputs(model: bytes, images: np.ndarray | None, n: int) -> np.ndarray:
    """Input 0 as the model wants it: the quantized images, or seeded random values."""
    from tflite_micro.python.tflite_micro import runtime

    details = runtime.Interpreter.from_bytes(model, arena_size=tflm.MAX_ARENA_BYTES)
    details = details.get_input_details(0)
    shape, dtype = tuple(details["shape"][1:]), np.dtype(details["dtype"])
    if images is None:
        info = np.iinfo(dtype)
        rng = np.random.default_rng(0)
        return rng.integers(info.min, info.max + 1, (n, *shape)).astype(dtype)
    q = details["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero_point = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    return to_model_input(images[:n], shape, dtype, scale, zero_point)


def assert_same_figures(model: bytes, arena: int, inputs: np.ndarray, folder: Path) -> None:
    write_bundle(model, folder, arena_bytes=arena)
    before = emulate_per_model(folder, CPU, inputs)
    after = emulate(folder, CPU, inputs)
    assert after.emulated, after.reason
    assert after.instructions == before.instructions
    assert after.firmware_flash_bytes == before.firmware_flash_bytes
    assert after.firmware_ram_bytes == before.firmware_ram_bytes
    assert after.arena_bytes == before.arena_bytes
    assert after.arena_used_bytes == before.arena_used_bytes
    assert after.arena_margin_bytes == before.arena_margin_bytes
    np.testing.assert_array_equal(after.outputs, before.outputs)


@needs_cortex_m
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int8", "none"])
def test_the_reference_cnn_counts_and_sizes_as_its_own_build(
    kind: str, converted: dict[str, bytes], mnist_small, tmp_path: Path
) -> None:
    model = converted[kind]
    x = mnist_small.x_test[:3]
    report = tflm.probe(model, x, mnist_small.y_test[:3], latency_repeats=1)
    assert_same_figures(model, report.arena_bytes, model_inputs(model, x, 3), tmp_path)


@needs_cortex_m
@pytest.mark.slow
def test_an_arena_grown_for_cmsis_nn_is_the_same_in_both(
    converted: dict[str, bytes], mnist_small, tmp_path: Path
) -> None:
    """A bundle arena too small for this build: both grow it to what TFLM reports."""
    model = converted["int8"]
    x = mnist_small.x_test[:1]
    arena = tflm.probe(model, x, mnist_small.y_test[:1], latency_repeats=1).arena_bytes
    assert_same_figures(model, arena - 200, model_inputs(model, x, 1), tmp_path)


@needs_cortex_m
@pytest.mark.needs("mlperf_tiny")
@pytest.mark.slow
def test_the_mlperf_keyword_spotting_model_counts_and_sizes_as_its_own_build(
    tmp_path: Path,
) -> None:
    model = (MLPERF_TINY / "kws_ref_model.tflite").read_bytes()
    arena = tflm.minimal_arena(model, tflm.MAX_ARENA_BYTES)
    assert_same_figures(model, arena, model_inputs(model, None, 1), tmp_path)
