"""The runner and the footprint against the per-model build they replace, on real models.

The per-model build (``sweep.runtimes.cortex_m.per_model``: the bundle compiled and
linked into its own firmware, every instruction counted) defines the board figures;
``emulate`` (one runner image per CPU, the model written in at run time, the footprint
worked out per operator set) must give the same instruction count, the same flash and
RAM to the byte, the same arena and the same outputs. Real toolchain, real TFLM +
CMSIS-NN, real Unicorn; the reference CNN in int8 on every emulated CPU (each CPU's
``main()`` is compiled on its own, so each has its own harness window) and in float32
(tests/conftest.py), the arena-growth path, and the MLPerf Tiny keyword-spotting model
on the Cortex-M4F and M7 (``benchmarks/board_cost.py --only MLPerf`` adds ResNet-8,
whose per-model build counts every instruction of ~30 M per invoke, and the reference
grid's int8 models).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.system import MLPERF_TINY, needs_cortex_m

from sweep.runtimes import tflm
from sweep.runtimes.bundle import write_bundle
from sweep.runtimes.cortex_m import emulate, emulate_per_model
from sweep.runtimes.cortex_m.footprint import arena_class
from sweep.runtimes.cortex_m.isa_classes import BRANCH_FEATURES, INSTRUCTION_CLASSES
from sweep.runtimes.tensors import to_model_input


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


def assert_same_figures(
    model: bytes, arena: int, inputs: np.ndarray, folder: Path, cpu: str = "cortex-m4f"
) -> None:
    write_bundle(model, folder, arena_bytes=arena)
    before = emulate_per_model(folder, cpu, inputs)
    after = emulate(folder, cpu, inputs)
    assert after.emulated, after.reason
    assert after.instructions == before.instructions
    assert after.firmware_flash_bytes == before.firmware_flash_bytes
    assert after.firmware_ram_bytes == before.firmware_ram_bytes
    assert after.arena_bytes == before.arena_bytes
    assert after.arena_used_bytes == before.arena_used_bytes
    assert after.arena_margin_bytes == before.arena_margin_bytes
    np.testing.assert_array_equal(after.outputs, before.outputs)
    np.testing.assert_array_equal(after.predictions, before.predictions)
    # The instruction mix: the same classes but for the harness's own instruction or two
    # around Invoke() (each main() is compiled on its own, see window.py), the same
    # branches taken and not. Adjacent-pair facts (m7_pairs, load_use, ...) are counted
    # inside translated blocks, and Unicorn ends a block at every 1 KB page boundary of
    # the code: they follow each image's own code layout, so they are not compared.
    classes = sum(abs(after.mix[c] - before.mix[c]) for c in INSTRUCTION_CLASSES)
    assert classes <= 2
    assert abs(after.mix.instructions - after.instructions) <= 2
    assert before.mix.instructions == before.instructions
    assert {b: after.mix[b] for b in BRANCH_FEATURES} == {b: before.mix[b] for b in BRANCH_FEATURES}


@pytest.mark.slow
@needs_cortex_m
@pytest.mark.parametrize(
    ("kind", "cpu"),
    [
        ("int8", "cortex-m4f"),
        ("none", "cortex-m4f"),
        ("int8", "cortex-m7"),
        ("int8", "cortex-m33"),
        ("int8", "cortex-m0plus"),
    ],
)
def test_the_reference_cnn_counts_and_sizes_as_its_own_build(
    kind: str, cpu: str, converted: dict[str, bytes], mnist_small, tmp_path: Path
) -> None:
    model = converted[kind]
    x = mnist_small.x_test[:3]
    report = tflm.probe(model, x, mnist_small.y_test[:3], latency_repeats=1)
    assert_same_figures(model, report.arena_bytes, model_inputs(model, x, 3), tmp_path, cpu)


@pytest.mark.slow
@needs_cortex_m
def test_an_arena_grown_for_cmsis_nn_is_the_same_in_both(
    converted: dict[str, bytes], mnist_small, tmp_path: Path
) -> None:
    """A bundle arena too small for this build: both grow it to what TFLM reports."""
    model = converted["int8"]
    x = mnist_small.x_test[:1]
    arena = tflm.probe(model, x, mnist_small.y_test[:1], latency_repeats=1).arena_bytes
    assert_same_figures(model, arena - 200, model_inputs(model, x, 1), tmp_path)


@pytest.mark.slow
@needs_cortex_m
@pytest.mark.needs("mlperf_tiny")
@pytest.mark.parametrize("cpu", ["cortex-m4f", "cortex-m7"])
def test_the_mlperf_keyword_spotting_model_counts_and_sizes_as_its_own_build(
    cpu: str, tmp_path: Path
) -> None:
    model = (MLPERF_TINY / "kws_ref_model.tflite").read_bytes()
    arena = tflm.minimal_arena(model, tflm.MAX_ARENA_BYTES)
    assert_same_figures(model, arena, model_inputs(model, None, 1), tmp_path, cpu)


def test_arena_classes_follow_the_thumb2_immediates() -> None:
    """Arenas share a footprint entry only when ``main.o`` materializes them with the same
    instruction and their ``.bss`` shifts by multiples of 16 (see footprint.py)."""
    assert arena_class(200, "cortex-m4f") == arena_class(8, "cortex-m4f") == "imm8 mod16=8"
    assert arena_class(22912, "cortex-m4f") == "modified-immediate mod16=0"  # 0xb3 << 7
    assert arena_class(1 << 20, "cortex-m7") == "modified-immediate mod16=0"
    assert arena_class(12512, "cortex-m33") == "imm16 mod16=0"  # 0x30e0: movw
    assert arena_class(12520, "cortex-m4f") == "imm16 mod16=8"
    assert arena_class(0x10530, "cortex-m4f") == "exactly 66864"  # movw + movt or a pool
    assert arena_class(12512, "cortex-m0plus") == "exactly 12512"  # ARMv6-M: no movw
    assert arena_class(200, "cortex-m0plus") == "imm8 mod16=8"


@pytest.mark.slow
@needs_cortex_m
@pytest.mark.parametrize("cpu", ["cortex-m4f", "cortex-m33"])  # M7 classes arenas as the M4F
def test_two_arenas_of_one_class_share_a_footprint_and_both_are_exact(
    cpu: str, converted: dict[str, bytes], mnist_small, tmp_path: Path
) -> None:
    """The second arena is worked out from the first's entry (bss shifted by the
    difference), and still equals its own per-model build to the byte."""
    model = converted["int8"]
    x = mnist_small.x_test[:1]
    arena = tflm.probe(model, x, mnist_small.y_test[:1], latency_repeats=1).arena_bytes
    arena = max(arena, 256) // 16 * 16 + 16
    other = next(
        a for a in range(arena + 16, arena + (1 << 16), 16)
        if arena_class(a, cpu) == arena_class(arena, cpu)
    )  # fmt: skip
    inputs = model_inputs(model, x, 1)
    for size in (arena, other):
        assert_same_figures(model, size, inputs, tmp_path / str(size), cpu)
