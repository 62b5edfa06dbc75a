"""The Cortex-M emulator core against the real tools: GNU Arm GCC, TFLM + CMSIS-NN, Unicorn.

The project's CNN (trained on the MNIST fixture, converted to float32 and full
int8 in tests/conftest.py) is bundled exactly as a sweep bundles it and emulated
on a Cortex-M4F (the runner image; tests/test_board_parity.py checks it against
the per-model build). Only cortex-m4f's library is built here (once, a few
minutes; cached in ``<project>/outputs/cache/firmware`` unless
``SWEEP_FIRMWARE_CACHE`` says otherwise, so later sessions and CI re-runs reuse it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sweep.runtimes import tflm
from sweep.runtimes.bundle import write_bundle
from sweep.runtimes.cortex_m import (
    CPUS,
    DEBIAN_PACKAGES,
    ThirdPartyMissing,
    ToolchainMissing,
    build_library,
    emulate,
    is_emulated,
)
from sweep.runtimes.cortex_m.emulator import CortexM, EmulationError, thumb_instruction_count
from sweep.runtimes.cortex_m.firmware import FIRMWARE_DIR, symbols
from sweep.runtimes.cortex_m.toolchain import third_party_root
from sweep.runtimes.tensors import to_model_input

ROOT = Path(__file__).resolve().parents[1]
CPU = "cortex-m4f"
N_IMAGES = 10


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
    """Both deployable conversions, bundled with their tflite-micro arena and emulated twice.

    Skipped (not failed) only when the TFLM sources are absent: they are an offline
    snapshot outside the repository, not something pip or apt can install.
    """
    try:
        third_party_root()
    except ThirdPartyMissing as missing:
        pytest.skip(str(missing))
    x, y = mnist_small.x_test[:N_IMAGES], mnist_small.y_test[:N_IMAGES]
    found = {}
    for kind in ("none", "int8"):
        model = converted[kind]
        report = tflm.probe(model, x, y, latency_repeats=1)
        bundle = tmp_path_factory.mktemp(f"bundle-{kind}")
        write_bundle(model, bundle, arena_bytes=report.arena_bytes)
        inputs, host_outputs = _host_run(model, x)
        work = tmp_path_factory.mktemp(f"firmware-{kind}")
        runs = [emulate(bundle, CPU, inputs, work_dir=work) for _ in range(2)]
        found[kind] = {
            "model": model,
            "report": report,
            "host": host_outputs,
            "runs": runs,
            "work": work,
        }
    return found


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "int8"])
def test_instruction_count_is_positive_and_identical_on_every_run(emulated, kind) -> None:
    first, second = emulated[kind]["runs"]
    assert first.emulated and first.cpu == CPU
    assert first.instructions > 10_000
    assert first.instructions == second.instructions
    assert first.firmware_flash_bytes == second.firmware_flash_bytes
    np.testing.assert_array_equal(first.outputs, second.outputs)
    assert len(first.outputs) == N_IMAGES


@pytest.mark.slow
def test_int8_needs_fewer_instructions_than_float32(emulated) -> None:
    int8, float32 = emulated["int8"]["runs"][0], emulated["none"]["runs"][0]
    assert int8.instructions < float32.instructions


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


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "int8"])
def test_flash_and_ram_figures_are_plausible(emulated, kind) -> None:
    result, report = emulated[kind]["runs"][0], emulated[kind]["report"]
    model_bytes = len(emulated[kind]["model"])
    assert model_bytes < result.firmware_flash_bytes < model_bytes + 512 * 1024
    assert result.arena_bytes >= report.arena_bytes - result.arena_margin_bytes
    assert result.arena_used_bytes <= result.arena_bytes
    assert result.arena_bytes <= result.firmware_ram_bytes < result.arena_bytes + 64 * 1024
    assert 0 < result.stack_bytes < 64 * 1024


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


@pytest.mark.slow
def test_library_is_built_once_and_reused() -> None:
    lib = build_library(CPU)
    assert lib.archive.exists() and not lib.built_now
    assert lib.archive.read_bytes() == lib.archive_bytes
    assert any(f == "-mfloat-abi=hard" for f in lib.cxxflags)
    assert any(f == "-DCMSIS_NN" for f in lib.cxxflags)


def test_every_configured_target_cpu_is_in_the_table() -> None:
    cpus = {OmegaConf.load(p).get("cpu") for p in (ROOT / "conf" / "target").glob("*.yaml")}
    assert cpus - {None} <= set(CPUS)
    assert is_emulated("cortex-m4f") and is_emulated("cortex-m7") and is_emulated("cortex-m0plus")
    assert not is_emulated("xtensa-lx6")
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


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs the toolchain")
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


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs the toolchain")
def test_counts_exactly_the_instructions_of_a_loop_of_known_length(tmp_path: Path) -> None:
    """4 instructions per iteration (16- and 32-bit mixed), plus the FPU in use."""
    import subprocess

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
