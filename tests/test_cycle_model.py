"""The cycle model per Cortex-M core: instruction classes, taken branches, budget, timing, fits.

Real tools throughout: hand-written Thumb assembled with GNU as, small C programs
compiled with GNU Arm GCC and run in Unicorn, the project's CNN built with TFLM +
CMSIS-NN for the Cortex-M33 and compared with tflite-micro on the host. The
timing and fit tests are pure arithmetic on documented tables and measured mixes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.system import MLPERF_TINY, needs_cortex_m
from unicorn import arm_const

from sweep.runtimes.cortex_m.emulator import CortexM, EmulationError
from sweep.runtimes.cortex_m.estimate import estimate
from sweep.runtimes.cortex_m.firmware import FIRMWARE_DIR, symbols
from sweep.runtimes.cortex_m.fit import (
    FIT_ROWS,
    board_cycles,
    fit_exposure,
    fit_memory,
    mixes_for,
    published_cycles,
)
from sweep.runtimes.cortex_m.isa_classes import FEATURES, INSTRUCTION_CLASSES, profile_block
from sweep.runtimes.cortex_m.measured import MEASURED_MIXES
from sweep.runtimes.cortex_m.memory import MemorySystem
from sweep.runtimes.cortex_m.mix import InstructionMix
from sweep.runtimes.cortex_m.published import ROWS, PublishedRow
from sweep.runtimes.cortex_m.reference_boards import REFERENCE_BOARDS
from sweep.runtimes.cortex_m.timing import CORES

needs_toolchain = pytest.mark.needs("arm_toolchain")


def _assemble(tmp_path: Path, body: str, cpu: str = "cortex-m4") -> bytes:
    """Thumb machine code of ``body`` (GNU as, .text only)."""
    source = tmp_path / "code.s"
    source.write_text(f".syntax unified\n.thumb\n.cpu {cpu}\n.fpu fpv4-sp-d16\n.text\n{body}\n")
    obj, raw = tmp_path / "code.o", tmp_path / "code.bin"
    subprocess.run(["arm-none-eabi-as", str(source), "-o", str(obj)], check=True)
    subprocess.run(
        ["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True
    )
    return raw.read_bytes()


def _counts(address: int, code: bytes) -> dict[str, int]:
    profile = profile_block(address, code)
    return {f: c for f, c in zip(FEATURES, profile.counts, strict=True) if c}


# ------------------------------------------------------------------ classification


@needs_toolchain
def test_a_cmsis_nn_like_inner_loop_is_classified_instruction_by_instruction(tmp_path: Path):
    code = _assemble(
        tmp_path,
        """
        ldr r0, [r1]             @ load
        ldr.w r2, [r1, #4]       @ load, pipelined after a load (its address is not r0)
        smlad r3, r0, r2, r3     @ mac, uses the value just loaded (load-use)
        sxtb16 r4, r0            @ simd
        add.w r1, r1, #8         @ alu
        ldr r5, [r1]             @ load whose address the add just computed
        str r5, [r6]             @ store, pipelined after a load (TRM: its address is not r5)
        subs r7, r7, #1          @ alu
        bne.n .                  @ conditional branch, backwards
        """,
    )
    counts = _counts(0x1000, code)
    assert counts == {
        "alu": 2,
        "mac": 1,
        "simd": 1,
        "load": 3,
        "store": 1,
        "cond_branch": 1,
        "wide": 4,  # ldr.w, smlad, sxtb16, add.w
        "ls_after_load": 2,
        "agu_after_alu": 1,
        "load_use": 2,  # r2 -> smlad, r5 -> str
        # M7 pairs: ldr+ldr.w (two load ports); sxtb16+add.w (a SIMD op starts a pair);
        # str+subs. Not smlad+sxtb16 (SIMD must come first), not ldr r5+str r5 (dependent).
        "m7_pairs": 3,
    }
    assert sum(counts.get(c, 0) for c in INSTRUCTION_CLASSES) == 9
    profile = profile_block(0x1000, code)
    assert profile.exit == "cond" and profile.backward


@needs_toolchain
def test_multiples_doubles_calls_returns_it_and_the_fpu(tmp_path: Path):
    code = _assemble(
        tmp_path,
        """
        push {r4-r7, lr}         @ store_multiple, 5 registers
        ldrd r0, r1, [r2]        @ load_double
        strd r0, r1, [r2, #8]    @ store_double
        ldmia r3!, {r4, r5, r6}  @ load_multiple, 3 registers
        mul r0, r1, r0           @ mul
        smull r0, r1, r2, r3     @ mul_long
        sdiv r0, r1, r2          @ div
        vldr s0, [r0]            @ fpu_load
        vmla.f32 s1, s2, s3      @ fpu_mac
        vadd.f32 s0, s1, s2      @ fpu
        vdiv.f32 s0, s1, s2      @ fpu_div
        vmov r0, s0              @ fpu_move
        vpush {s16-s19}          @ fpu_multiple, 4 words
        cmp r0, #0               @ alu
        it eq                    @ it
        addeq r0, r0, #1         @ alu (conditional)
        nop                      @ nop
        pop {r4-r7, pc}          @ load_multiple writing pc: a return
        """,
    )
    counts = _counts(0x2000, code)
    expected = {
        "store_multiple": 1, "stm_registers": 5, "load_double": 1, "store_double": 1,
        "load_multiple": 2, "ldm_registers": 3 + 5, "pc_loads": 1, "mul": 1, "mul_long": 1,
        "div": 1, "fpu_load": 1, "fpu_mac": 1, "fpu": 1, "fpu_div": 1, "fpu_move": 1,
        "fpu_multiple": 1, "fpu_words": 4, "alu": 2, "it": 1, "nop": 1,
    }  # fmt: skip
    for feature, count in expected.items():
        assert counts.get(feature, 0) == count, feature
    assert sum(counts.get(c, 0) for c in INSTRUCTION_CLASSES) == 18
    assert profile_block(0x2000, code).exit == "return"


@needs_toolchain
def test_calls_and_unconditional_branches_end_blocks_of_their_kind(tmp_path: Path):
    call = _assemble(tmp_path, "movs r0, #1\nbl .+0x100")
    assert _counts(0x3000, call) == {"alu": 1, "call": 1, "wide": 1, "m7_pairs": 1}
    assert profile_block(0x3000, call).exit == "call"
    jump = _assemble(tmp_path, "movs r0, #1\nb.n .+0x40")
    assert profile_block(0x3000, jump).exit == "other"
    forward = _assemble(tmp_path, "cmp r0, #0\nbeq.n .+0x20")
    profile = profile_block(0x3000, forward)
    assert profile.exit == "cond" and not profile.backward


def test_the_m0plus_build_s_instructions_have_no_dsp_classes():
    """ARMv6-M code (measured mixes of the Cortex-M0+ build) uses no DSP or FPU class."""
    for model, counts in MEASURED_MIXES.get("cortex-m0plus", {}).items():
        assert all(counts.get(c, 0) == 0 for c in ("mac", "simd", "fpu", "div")), model
        assert counts["load"] > 0 and counts["alu"] > 0


# ------------------------------------------------------------------ branches and the budget

LOOP_C = r"""
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
  sweep_mark();
  loop(ITERATIONS);
  sweep_mark();
  return 0;
}
"""


def _build_loop(tmp_path: Path, iterations: int) -> Path:
    (tmp_path / "loop.c").write_text(LOOP_C)
    elf = tmp_path / f"loop-{iterations}.elf"
    subprocess.run(
        [
            "arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
            "-mfpu=fpv4-sp-d16", "-O2", f"-DITERATIONS={iterations}", "-nostartfiles",
            "--specs=nano.specs", "--specs=nosys.specs", f"-T{FIRMWARE_DIR / 'sweep.ld'}",
            str(FIRMWARE_DIR / "startup.c"), str(tmp_path / "loop.c"), "-o", str(elf),
        ],
        check=True,
    )  # fmt: skip
    return elf


@needs_toolchain
def test_a_loop_of_n_iterations_takes_its_back_edge_n_minus_1_times(tmp_path: Path):
    iterations = 1000
    elf = _build_loop(tmp_path, iterations)
    table = symbols(elf)
    run = CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096).run(
        table["sweep_done"], {table["sweep_mark"]: "mark"}
    )
    mix = run.mix(0, 1)  # from the first mark to the second
    (_, begin), (_, end) = run.marks
    assert mix.instructions == end - begin == 4 * iterations + 4
    assert mix["cond_branch"] == iterations
    assert mix["taken_cond"] == iterations - 1
    assert mix["not_taken"] == mix["loop_exits"] == 1
    # mark's bx lr, bl loop, loop's bx lr, bl sweep_mark: two calls, two returns
    assert mix["taken_call"] == 2 and mix["taken_return"] == 2
    assert mix["taken"] == iterations - 1 + 4
    assert mix["nop"] == iterations and mix["alu"] == 2 * iterations
    # the whole run: its classes still sum to the exact total
    assert run.mix().instructions == run.instructions
    again = CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096).run(
        table["sweep_done"], {table["sweep_mark"]: "mark"}
    )
    assert again.mix(0, 1) == mix and again.instructions == run.instructions


@needs_toolchain
def test_the_instruction_budget_stops_a_program_that_runs_too_long(tmp_path: Path):
    elf = _build_loop(tmp_path, 10_000_000)
    table = symbols(elf)
    core = CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096)
    with pytest.raises(EmulationError, match=r"did not finish within 50,000 instructions"):
        core.run(table["sweep_done"], max_instructions=50_000)


@needs_toolchain
def test_a_budget_above_the_program_s_length_changes_nothing(tmp_path: Path):
    elf = _build_loop(tmp_path, 100)
    table = symbols(elf)
    free = CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096).run(table["sweep_done"])
    capped = CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096).run(
        table["sweep_done"], max_instructions=free.instructions
    )
    assert capped.instructions == free.instructions
    with pytest.raises(EmulationError, match="did not finish within"):
        CortexM(elf, arm_const.UC_CPU_ARM_CORTEX_M4, 4096).run(
            table["sweep_done"], max_instructions=free.instructions - 50
        )


# ------------------------------------------------------------------ timing arithmetic


def test_the_m4_table_prices_a_known_mix_as_its_manual_does():
    """10 ALU + 4 LDR (2 pipelined) + 5 SMLAD + 3 taken branches (B<c>: 1 + P, P = 2)."""
    mix = InstructionMix(
        {"alu": 10, "load": 4, "ls_after_load": 2, "mac": 5, "cond_branch": 3, "taken": 3}
    )
    assert mix.instructions == 22
    assert CORES["cortex-m4f"].cycles(mix) == 10 + 4 * 2 - 2 + 5 + 3 * 1 + 3 * 2
    low, high = CORES["cortex-m4f"].cycles_range(mix)
    assert (low, high) == (30 - 3, 30 + 3)  # P from 1 to 3 cycles
    assert CORES["cortex-m33"].cycles(mix) == CORES["cortex-m4f"].cycles(mix)


def test_the_m0plus_table_prices_branches_calls_and_pops_as_its_manual_does():
    # B taken 2, B<c> not taken 1, BL 3, BX 2, POP {r4, pc} 3+N = 5, LDR 2, MULS 1
    mix = InstructionMix(
        {"branch": 1, "cond_branch": 1, "call": 1, "indirect_branch": 1, "load_multiple": 1,
         "ldm_registers": 2, "pc_loads": 1, "load": 1, "mul": 1, "taken": 4, "not_taken": 1}
    )  # fmt: skip
    assert CORES["cortex-m0plus"].cycles(mix) == 2 + 1 + 3 + 2 + 5 + 2 + 1


def test_the_m7_saves_one_cycle_per_dual_issued_pair():
    mix = InstructionMix({"alu": 6, "load": 2, "m7_pairs": 3, "loop_exits": 1})
    assert CORES["cortex-m7"].cycles(mix) == 8 - 3 + 4


def test_the_memory_stall_counts_code_lines_and_loaded_words_only_from_flash():
    mix = InstructionMix({"alu": 6, "wide": 2, "load": 3, "load_double": 1, "ldm_registers": 4})
    flash = MemorySystem("t", "flash", "flash", wait_states=5, fetch_bytes=8, accelerator="art")
    code_bytes = 2 * (10 + 2)  # 10 instructions (6 alu + 3 ldr + 1 ldrd), 2 of them 32-bit
    words = 3 + 2 + 4
    assert flash.flash_accesses(mix) == code_bytes / 8 + words
    assert flash.stall_cycles(mix, 0.5) == 0.5 * 5 * (code_bytes / 8 + words)
    sram_weights = MemorySystem("t", "flash", "sram", 5, 8, "art")
    assert sram_weights.flash_accesses(mix) == code_bytes / 8
    tcm = MemorySystem("t", "tcm", "tcm", 5, 8, "none")
    assert not tcm.in_flash and tcm.stall_cycles(mix, 1.0) == 0
    with pytest.raises(ValueError, match="accelerator must be one of"):
        MemorySystem("t", "flash", "flash", 5, 8, "turbo")


def test_wait_states_follow_the_clock_through_the_datasheet_table():
    l4r5 = REFERENCE_BOARDS["nucleo_l4r5zi"]
    assert l4r5.wait_states_at(120) == l4r5.wait_states == 5
    assert l4r5.wait_states_at(64) == 3 and l4r5.wait_states_at(20) == 0
    with pytest.raises(ValueError, match="above its flash's fastest clock"):
        l4r5.wait_states_at(168)
    mix = mixes_for("cortex-m4f")["kws"]
    slow = estimate(mix, "cortex-m4f", l4r5, 60)
    fast = estimate(mix, "cortex-m4f", l4r5, 120)
    assert slow.core_cycles == fast.core_cycles
    assert slow.memory_cycles == pytest.approx(fast.memory_cycles * 2 / 5)  # 2 vs 5 WS


# ------------------------------------------------------------------ the fits


def test_an_exposure_is_recovered_from_latencies_it_generated():
    """The fit is computed: latencies made from a known exposure give it back."""
    mixes = mixes_for("cortex-m4f")
    memory = REFERENCE_BOARDS["nucleo_l4r5zi"]
    latencies = {
        m: board_cycles(mix, "cortex-m4f", memory, 0.3) / (120 * 1e3) for m, mix in mixes.items()
    }
    row = PublishedRow(
        "synthetic", "-", "synthetic", "Cortex-M4F", "cortex-m4f", "nucleo_l4r5zi", 120,
        "synthetic", "tflm_cmsis_nn", latencies,
    )  # fmt: skip
    assert fit_exposure(row, mixes) == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("memory", sorted(FIT_ROWS))
def test_every_fitted_board_reproduces_its_row_within_15_percent(memory: str):
    fit = fit_memory(memory)
    assert fit.exposure > 0
    assert set(fit.residuals_pct) == {"kws", "ic"}
    assert all(abs(e) <= 15 for e in fit.residuals_pct.values()), fit
    assert set(fit.leave_one_out_pct) == {"kws", "ic"}


def test_estimates_of_a_fitted_board_are_calibrated_and_banded():
    mixes = mixes_for("cortex-m4f")
    row = ROWS[FIT_ROWS["nucleo_l4r5zi"]]
    for model in row.latency_ms:  # the fitted models (person detection has no row there)
        found = estimate(mixes[model], "cortex-m4f", REFERENCE_BOARDS["nucleo_l4r5zi"], 120, 41.5)
        assert found.calibrated and "calibrated on" in found.basis
        assert found.band_ms[0] <= found.ms <= found.band_ms[1]
        assert found.energy_uj == pytest.approx(found.ms * 41.5)
        assert found.cycles == pytest.approx(found.core_cycles + found.memory_cycles)
        assert abs(found.ms / row.latency_ms[model] - 1) <= 0.15
        slow = ROWS["v0.5-reference"].latency_ms[model]  # the slow edge is a published row
        assert found.band_ms[1] == pytest.approx(slow, rel=0.05)
        assert published_cycles(row, model) == row.latency_ms[model] * 120e3


def test_an_unmeasured_board_says_its_memory_is_not_calibrated():
    mix = mixes_for("cortex-m4f")["kws"]
    found = estimate(mix, "cortex-m7", REFERENCE_BOARDS["disco_f746ng"], 216)
    assert not found.calibrated
    assert "NOT calibrated" in found.basis and "timing model alone" in found.basis
    assert found.energy_uj is None
    assert found.band_ms[0] < found.ms < found.band_ms[1]
    h7 = REFERENCE_BOARDS["nucleo_h7a3zi"]  # no wait-state table: the same 6 at any clock
    at_double = estimate(mix, "cortex-m7", h7, 560)
    assert at_double.ms == pytest.approx(estimate(mix, "cortex-m7", h7, 280).ms / 2)


def test_a_new_board_is_one_description_and_borrows_an_exposure_it_says_is_borrowed():
    """An M33 board described like the EK-RA6M4 but naming the nRF5340-DK's fit: the
    nRF5340's exposure, stated as borrowed; within 25 % of the RA6M4's published rows."""
    facts = REFERENCE_BOARDS["ek_ra6m4"].__dict__
    new = MemorySystem(**{**facts, "name": "my_ra6m4_board", "calibration": "nrf5340_dk"})
    row = ROWS["v0.7-renesas"]
    for model, mix in mixes_for("cortex-m33").items():
        found = estimate(mix, "cortex-m33", new, 200)
        assert not found.calibrated and "borrowed from nrf5340_dk's fit" in found.basis
        assert found.exposure == fit_memory("nrf5340_dk").exposure
        assert abs(found.ms / row.latency_ms[model] - 1) < 0.25
        assert found.band_ms[0] <= row.latency_ms[model] <= found.band_ms[1]


def test_without_a_fitted_memory_of_its_kind_the_point_is_the_core_alone():
    mix = mixes_for("cortex-m4f")["kws"]
    xip = MemorySystem("xip_board", "xip", "xip", 40, 8, "xip_cache")
    found = estimate(mix, "cortex-m4f", xip, 100)
    assert found.memory_cycles == 0 and found.cycles == CORES["cortex-m4f"].cycles(mix)
    assert "no xip_cache memory system is fitted" in found.basis
    assert found.band_ms[1] > 2 * found.ms  # the upper edge: the largest fitted exposure


# ------------------------------------------------------------------ Cortex-M33, real build


@pytest.fixture(scope="module")
def m33(converted: dict[str, bytes], mnist_small, tmp_path_factory) -> dict:
    """The int8 CNN built for the Cortex-M33 (TFLM + CMSIS-NN), emulated on 5 test images
    (its tests are marked ``needs_cortex_m``)."""
    from test_cortex_m import _host_run

    from sweep.runtimes import tflm
    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import emulate

    model = converted["int8"]
    x = mnist_small.x_test[:5]
    report = tflm.probe(model, x, mnist_small.y_test[:5], latency_repeats=1)
    bundle = tmp_path_factory.mktemp("bundle-m33")
    write_bundle(model, bundle, arena_bytes=report.arena_bytes)
    inputs, host = _host_run(model, x)
    runs = [emulate(bundle, "cortex-m33", inputs) for _ in range(2)]
    m4f = emulate(bundle, "cortex-m4f", inputs)
    return {"runs": runs, "host": host, "m4f": m4f}


@needs_cortex_m
@pytest.mark.slow
def test_the_m33_build_runs_the_cnn_bit_exactly_as_tflite_micro(m33):
    result = m33["runs"][0]
    assert result.emulated and result.cpu == "cortex-m33"
    np.testing.assert_array_equal(result.outputs, m33["host"])


@needs_cortex_m
@pytest.mark.slow
def test_the_m33_build_takes_cmsis_nn_s_dsp_path_like_the_m4f(m33):
    first, second = m33["runs"]
    assert first.instructions == second.instructions and first.mix == second.mix
    # The mix is the runner's counted window; the count is the per-model build's, whose
    # main() may run an instruction or two more or fewer around Invoke() (window.py).
    assert abs(first.mix.instructions - first.instructions) <= 2
    assert first.mix["mac"] > 0 and first.mix["simd"] > 0  # SMLAD and SXTB16 executed
    m4f = m33["m4f"]
    assert abs(first.instructions / m4f.instructions - 1) < 0.1


# ------------------------------------------------------------------ the measured facts


@needs_cortex_m
@pytest.mark.needs("mlperf_tiny")
@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-m4f", "cortex-m33"])
def test_measured_mixes_are_reproduced(cpu: str, tmp_path: Path):
    """The kws mix kept in measured.py is what the emulator counts today, class for class
    (exact and deterministic: a new TFLM, CMSIS-NN or compiler shows up here)."""
    from tflite_micro.python.tflite_micro import runtime

    from sweep.runtimes import tflm
    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import emulate

    model = (MLPERF_TINY / "kws_ref_model.tflite").read_bytes()
    write_bundle(model, tmp_path, arena_bytes=tflm.minimal_arena(model, tflm.MAX_ARENA_BYTES))
    details = runtime.Interpreter.from_bytes(model, arena_size=64 << 20).get_input_details(0)
    shape = (1, *details["shape"][1:])  # seeded int8 input, as measured.py's counts were made
    inputs = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    result = emulate(tmp_path, cpu, inputs)
    assert result.mix.as_dict(nonzero=True) == MEASURED_MIXES[cpu]["kws"]
    assert result.instructions == result.mix.instructions
