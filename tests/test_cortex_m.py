"""The Cortex-M emulator core against the real tools: GNU Arm GCC, TFLM + CMSIS-NN, Unicorn.

The project's CNN (trained on the MNIST fixture, converted to float32 and full
int8 in tests/conftest.py) is bundled exactly as a sweep bundles it and emulated
on a Cortex-M4F (the runner image; tests/test_board_parity.py checks it against
the per-model build); the int8 one also for the Cortex-M7 and the Cortex-M0+
through their boards' YAMLs. Each CPU's library is built once (minutes; cached in
``SWEEP_FIRMWARE_CACHE``, by default ``~/.cache/sweep/firmware`` as in CI, so later
sessions and clones reuse it). Tests that build need the Arm toolchain and the TFLM
sources (``needs_cortex_m``: skipped with the install command where they are missing,
failed in CI).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.config import composed_target
from helpers.elf import Elf
from helpers.system import needs_cortex_m
from omegaconf import OmegaConf

from sweep.checks import ModelUnderTest
from sweep.runtimes import tflm
from sweep.runtimes.bundle import write_bundle
from sweep.runtimes.cortex_m import (
    CPUS,
    DEBIAN_PACKAGES,
    ThirdPartyMissing,
    ToolchainMissing,
    build_library,
    cache_dir,
    emulate,
    emulate_per_model,
    is_emulated,
)
from sweep.runtimes.cortex_m.emulator import CortexM, EmulationError, thumb_instruction_count
from sweep.runtimes.cortex_m.firmware import FIRMWARE_DIR, symbols
from sweep.runtimes.cortex_m.library import library_plan
from sweep.runtimes.cortex_m.run import model_operators
from sweep.runtimes.flatbuffer import operator_codes
from sweep.runtimes.tensors import to_model_input

ROOT = Path(__file__).resolve().parents[1]
CPU = "cortex-m4f"
N_IMAGES = 5
AGAIN_IMAGES = {"none": 2, "int8": N_IMAGES}
"""Images of the second run: its count (image 0's invoke) and its outputs are compared
with the first run's on the images both runs share."""


def _host_run(model: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images as the model's input 0 wants them, and tflite-micro's own outputs on the host."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model, arena_size=tflm.MAX_ARENA_BYTES)
    details = interp.get_input_details(0)
    q = details["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero_point = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    inputs = to_model_input(images, details["shape"][1:], details["dtype"], scale, zero_point)
    outputs = []
    for image in inputs:
        interp.set_input(image[np.newaxis], 0)
        interp.invoke()
        outputs.append(interp.get_output(0).reshape(-1).copy())
    return inputs, np.stack(outputs)


@pytest.fixture(scope="module")
def emulated(converted: dict[str, bytes], mnist_small, tmp_path_factory) -> dict:
    """Both deployable conversions, bundled with their tflite-micro arena and emulated twice
    (the second run of float32 on its first images only); the float32 and int8 bundles are
    also linked into firmware of their own (the per-model build), whose ELF the flash and
    RAM figures are read from."""
    x, y = mnist_small.x_test[:N_IMAGES], mnist_small.y_test[:N_IMAGES]
    found = {}
    for kind in ("none", "int8"):
        model = converted[kind]
        report = tflm.probe(model, x, y, latency_repeats=1)
        bundle = tmp_path_factory.mktemp(f"bundle-{kind}")
        write_bundle(model, bundle, arena_bytes=report.arena_bytes)
        inputs, host_outputs = _host_run(model, x)
        work = tmp_path_factory.mktemp(f"firmware-{kind}")
        runs = [emulate(bundle, CPU, inputs), emulate(bundle, CPU, inputs[: AGAIN_IMAGES[kind]])]
        emulate_per_model(bundle, CPU, inputs[:1], work_dir=work)  # keeps its ELF in work
        found[kind] = {
            "model": model,
            "report": report,
            "host": host_outputs,
            "runs": runs,
            "work": work,
            "images": x,
            "labels": y,
        }
    return found


@needs_cortex_m
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "int8"])
def test_instruction_count_is_positive_and_identical_on_every_run(emulated, kind) -> None:
    first, second = emulated[kind]["runs"]
    assert first.emulated and first.cpu == CPU
    assert first.instructions > 10_000
    assert first.instructions == second.instructions
    assert first.firmware_flash_bytes == second.firmware_flash_bytes
    assert len(first.outputs) == N_IMAGES and len(second.outputs) == AGAIN_IMAGES[kind]
    np.testing.assert_array_equal(first.outputs[: AGAIN_IMAGES[kind]], second.outputs)


@needs_cortex_m
@pytest.mark.slow
def test_int8_needs_fewer_instructions_than_float32(emulated) -> None:
    int8, float32 = emulated["int8"]["runs"][0], emulated["none"]["runs"][0]
    assert int8.instructions < float32.instructions


@needs_cortex_m
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "int8"])
def test_predictions_equal_tflite_micro_on_the_host(emulated, kind) -> None:
    result, host = emulated[kind]["runs"][0], emulated[kind]["host"]
    assert result.outputs.shape == host.shape and result.outputs.dtype == host.dtype
    np.testing.assert_array_equal(result.predictions, host.argmax(axis=1))
    if kind == "int8":  # CMSIS-NN's int8 kernels are bit-exact with TFLM's reference ones
        np.testing.assert_array_equal(result.outputs, host)
    else:  # float: the Cortex-M FPU may fuse multiply-adds where x86 does not
        np.testing.assert_allclose(result.outputs, host, rtol=1e-4, atol=1e-5)


def _arena(elf: Elf) -> int:
    """Size of the firmware's tensor arena (``tensor_arena`` in main.cc, C++-mangled)."""
    (size,) = [s.size for name, s in elf.symbols.items() if re.search(r"tensor_arena(E|$)", name)]
    return size


@needs_cortex_m
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "int8"])
def test_flash_and_ram_figures_are_the_linked_images(emulated, kind) -> None:
    """The runner's figures are those of the model's own firmware (the per-model build's
    ELF), read here without the toolchain: flash is every byte stored in the image, RAM
    every writable byte; the model is in flash byte for byte and the arena is the size
    reported."""
    result, report = emulated[kind]["runs"][0], emulated[kind]["report"]
    model = emulated[kind]["model"]
    [elf] = [e for e in map(Elf, emulated[kind]["work"].glob("*.elf")) if _arena(e) == (
        result.arena_bytes)]  # fmt: skip
    assert result.firmware_flash_bytes == elf.flash_bytes
    assert result.firmware_ram_bytes == elf.ram_bytes
    assert elf.bytes_of("g_model") == model
    assert len(model) < result.firmware_flash_bytes < len(model) + 512 * 1024
    assert result.arena_bytes >= report.arena_bytes - result.arena_margin_bytes
    assert result.arena_used_bytes <= result.arena_bytes
    assert result.arena_bytes <= result.firmware_ram_bytes < result.arena_bytes + 64 * 1024
    assert 0 < result.stack_bytes < 64 * 1024


@needs_cortex_m
@pytest.mark.slow
def test_a_too_small_arena_is_grown_to_what_tflm_reports_and_recorded(
    emulated, tmp_path: Path
) -> None:
    int8 = emulated["int8"]
    used = int8["runs"][0].arena_used_bytes
    write_bundle(int8["model"], tmp_path, arena_bytes=used - 256)
    inputs, _ = _host_run(int8["model"], np.zeros((1, 28, 28), np.float32))
    result = emulate(tmp_path, CPU, inputs)
    assert result.arena_bytes == (used + 15) // 16 * 16
    assert result.arena_margin_bytes == result.arena_bytes - (used - 256) > 0
    assert result.instructions > 0


@needs_cortex_m
@pytest.mark.slow
def test_library_is_built_once_and_reused() -> None:
    """Whatever ran before (a cold or a warm cache): the second call builds nothing."""
    first = build_library(CPU, operators={"FULLY_CONNECTED"})
    again = build_library(CPU, operators={"FULLY_CONNECTED"})
    assert not again.built_now and again.build_seconds == 0.0
    assert again.root == first.root == cache_dir(CPU)
    assert again.archive_bytes == first.archive_bytes and again.key == first.key
    assert any(f == "-mfloat-abi=hard" for f in again.cxxflags)
    assert any(f == "-DCMSIS_NN" for f in again.cxxflags)
    assert cache_dir(CPU, None) != cache_dir(CPU)  # reference kernels: another library


def _archive_names(data: bytes, folder: Path) -> list[str]:
    archive = folder / "lib.a"
    archive.write_bytes(data)
    listed = subprocess.run(["arm-none-eabi-ar", "t", str(archive)], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return listed.stdout.split()


@needs_cortex_m
@pytest.mark.slow
def test_a_new_operator_compiles_only_its_kernel_into_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The library of an operator set is the common part (interpreter, shared helpers,
    CMSIS-NN's C functions) plus that set's kernels, in TFLM's archive order; an operator
    met for the first time compiles its kernel alone (a cache holding only the common
    part, copied from the shared cache, shows it: nothing else can be compiled). Another
    operator set is another library (and key)."""
    shared = build_library(CPU, operators={"FULLY_CONNECTED"})
    plan = library_plan(CPU)
    local = tmp_path / "firmware"
    monkeypatch.setenv("SWEEP_FIRMWARE_CACHE", str(local))
    base = cache_dir(CPU)
    shutil.copytree(shared.root.with_name(f"{shared.root.name}-base"), f"{base}-base")
    with caplog.at_level(logging.INFO, logger="sweep.runtimes.cortex_m"):
        lib = build_library(CPU, operators={"SHAPE"})
    assert lib.built_now and lib.root == base
    assert "compiling 1 TFLM + CMSIS-NN objects for cortex-m4f (1 operator kernel" in caplog.text
    kernels = [m for m in lib.members if m in plan.operator_members]
    assert [Path(m).name for m in kernels] == ["shape.o"]
    assert [m for m in lib.members if m not in kernels] == list(plan.base)
    assert lib.members == tuple(m for m in plan.members if m in set(lib.members))  # TFLM's order
    assert _archive_names(lib.archive_bytes, tmp_path) == [Path(m).name for m in lib.members]
    assert len(plan.base) < len(lib.members) < len(plan.members)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sweep.runtimes.cortex_m"):
        again = build_library(CPU, operators={"SHAPE"})
    assert not again.built_now and "compiling" not in caplog.text
    assert again.archive_bytes == lib.archive_bytes and again.key == lib.key
    assert shared.key != lib.key  # another operator set: another library
    with pytest.raises(ValueError, match="no builtin operator 'NOT_AN_OP'"):
        build_library(CPU, operators={"NOT_AN_OP"})


OTHER_BOARDS = {"cortex-m7": ("stm32f746_disco", "-mcpu=cortex-m7"),
                "cortex-m0plus": ("rpi_pico", "-mcpu=cortex-m0plus")}  # fmt: skip


@needs_cortex_m
@pytest.mark.slow
@pytest.mark.parametrize("cpu", list(OTHER_BOARDS))
def test_the_int8_cnn_runs_on_the_other_cortex_m_boards_as_a_sweep_measures_it(
    cpu: str, emulated, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The board's own checks, composed from its YAML as a sweep composes it: the model is
    built for the board's CPU and emulated on ``target.emulate_images`` images, its
    predictions equal tflite-micro's, and the estimates follow from the board's figures.

    Cost: one library build per CPU the first time (minutes; cached), then seconds.
    """
    name, mcpu = OTHER_BOARDS[cpu]
    target = composed_target(name, "target.emulate_images=3")
    assert target.cpu == cpu
    int8 = emulated["int8"]
    x = int8["images"]
    with caplog.at_level(logging.INFO, logger="sweep.runtimes.cortex_m"):
        found = target.measure(ModelUnderTest(int8["model"], x, int8["labels"], tmp_path))
    metrics = found.metrics
    assert metrics["mcu_runs"] == 1 and metrics["fits_target"] == 1
    assert metrics["mcu_emulated"] == 1, found.tags
    assert metrics["mcu_emulated_parity_ok"] == 1
    assert re.search(rf"{cpu}: \d+ instructions per invoke.* emulated 3 images", caplog.text)
    assert metrics["mcu_est_latency_ms"] == pytest.approx(
        metrics["mcu_est_cycles"] / (target.clock_mhz * 1e3)
    )
    low, high = metrics["mcu_est_latency_low_ms"], metrics["mcu_est_latency_high_ms"]
    assert low <= metrics["mcu_est_latency_ms"] < high  # low == point: no fitted XIP system
    # No TFLM or CMSIS-NN row is published for these cores: the timing model alone, said so.
    assert "timing model alone" in found.tags["mcu_estimate_basis"]
    assert "NOT calibrated on this board" in found.tags["mcu_estimate_basis"]
    assert metrics["mcu_est_energy_uj"] == pytest.approx(
        metrics["mcu_est_latency_ms"] * target.active_power_mw
    )
    operators = model_operators(operator_codes(int8["model"]))  # compiled above: no build
    assert mcpu in build_library(cpu, operators=operators).cxxflags  # the CPU's, not the M4F's
    m4f = int8["runs"][0].instructions
    if cpu == "cortex-m0plus":  # ARMv6-M has no DSP/SIMD instructions: CMSIS-NN's plain C path
        assert metrics["mcu_instructions"] > 1.5 * m4f
    else:  # the Cortex-M7 runs the M4F's instruction set (ARMv7E-M)
        assert metrics["mcu_instructions"] == pytest.approx(m4f, rel=0.1)


def test_every_configured_target_cpu_is_in_the_table() -> None:
    cpus = {OmegaConf.load(p).get("cpu") for p in (ROOT / "conf" / "target").glob("*.yaml")}
    assert cpus - {None} <= set(CPUS)
    assert is_emulated("cortex-m4f") and is_emulated("cortex-m7") and is_emulated("cortex-m0plus")
    assert is_emulated("cortex-m33") and not is_emulated("xtensa-lx6")
    # Every emulated CPU has its core's timing table, or its runs could get no estimate.
    from sweep.runtimes.cortex_m.timing import CORES

    assert {c for c in CPUS if is_emulated(c)} == set(CORES)
    with pytest.raises(ValueError, match="unknown cpu"):
        is_emulated("z80")


def test_esp32_is_reported_as_not_emulated(tmp_path: Path) -> None:
    result = emulate(tmp_path, "xtensa-lx6", np.zeros((1, 4), np.int8))
    assert not result.emulated and result.instructions is None
    assert "not emulated" in result.reason and "Xtensa" in result.reason


def test_without_the_toolchain_the_error_names_the_debian_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainMissing) as error:
        build_library(CPU)
    message = str(error.value)
    assert "\n" not in message
    assert f"apt-get install {' '.join(DEBIAN_PACKAGES)}" in message
    assert DEBIAN_PACKAGES == (
        "gcc-arm-none-eabi",
        "libnewlib-arm-none-eabi",
        "libstdc++-arm-none-eabi-newlib",
    )


@pytest.mark.needs("arm_toolchain")
def test_without_the_sources_the_error_names_sweep_third_party(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_THIRD_PARTY", str(tmp_path / "nowhere"))
    with pytest.raises(ThirdPartyMissing, match="SWEEP_THIRD_PARTY"):
        build_library(CPU)


def test_thumb_instruction_lengths() -> None:
    # movs r0,#1 (16-bit); add.w r3,r3,#1 (32-bit); bl (32-bit); bx lr (16-bit)
    code = bytes.fromhex("012003f10103fff7edff7047")
    assert thumb_instruction_count(code) == 4


LOOP_C = r"""
volatile float f = 1.5f;
__attribute__((noinline, used)) void sweep_mark(void) { __asm volatile("" ::: "memory"); }
__attribute__((noinline)) void loop(int n) {
  __asm volatile(
      "1: subs %0, %0, #1\n"
      "   nop\n"
      "   add.w r3, r3, #1\n"
      "   bne 1b\n"
      : "+r"(n)::"r3", "cc");
}
int main(void) {
  f = f * 2.0f;
  sweep_mark();
  loop(ITERATIONS);
  sweep_mark();
  return 0;
}
"""


@pytest.mark.needs("arm_toolchain")
def test_counts_exactly_the_instructions_of_a_loop_of_known_length(tmp_path: Path) -> None:
    """4 instructions per iteration (16- and 32-bit mixed), plus the FPU in use."""
    from unicorn import arm_const

    (tmp_path / "loop.c").write_text(LOOP_C)
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2"]
    counted = {}
    for iterations in (1000, 5000):
        elf = tmp_path / f"loop-{iterations}.elf"
        subprocess.run(
            [
                "arm-none-eabi-gcc",
                *flags,
                f"-DITERATIONS={iterations}",
                "-nostartfiles",
                "--specs=nano.specs",
                "--specs=nosys.specs",
                f"-T{FIRMWARE_DIR / 'sweep.ld'}",
                str(FIRMWARE_DIR / "startup.c"),
                str(tmp_path / "loop.c"),
                "-o",
                str(elf),
            ],
            check=True,
        )
        table = symbols(elf)
        run = CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096).run(
            table["sweep_done"], {table["sweep_mark"]: "mark"}
        )
        (_, begin), (_, end) = run.marks
        counted[iterations] = end - begin
    # mark's bx lr; bl loop | 4 per iteration | loop's bx lr; bl mark (gcc -O2 hoists mov n)
    assert counted[1000] == 4 * 1000 + 4
    assert counted[5000] - counted[1000] == 4 * 4000
    # The CPU model asked for is the one emulated: an ARMv6-M core refuses Thumb-2 code.
    with pytest.raises(EmulationError, match="faulted"):
        CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M0, 4096).run(table["sweep_done"])
