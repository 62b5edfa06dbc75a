"""Cycles per instruction class for each Cortex-M core, at zero wait states.

A core's timing is a linear function of the instruction mix (:mod:`.mix`):
``cycles = sum(weight[feature] x mix[feature])``. Linear on purpose: every cycle
of an estimate can be traced to a count and a documented per-class cost, and the
arithmetic is testable on a hand-written mix. What memory adds on top (flash
wait states, caches, XIP) is :mod:`.memory`'s part.

Sources, core by core:

- **Cortex-M4** — Arm Cortex-M4 Technical Reference Manual r0p1 (DDI 0439B), §3.3.1
  "Cortex-M4 instruction set summary" (Table 3-1: cycles per instruction at zero
  wait states; P = pipeline refill, 1-3 cycles; N = registers in the list) and
  §3.3.2 "Load/store timings" (a single STR is one cycle; a load or store right
  after an LDR that does not compute its address is pipelined, one cycle less; an
  address computed by the instruction just before stalls one cycle, no forwarding;
  LDR PC is two cycles of load plus a three-cycle refill). FPU: §7.2 "FPU
  functional description", Table 7-1 (VADD/VMUL 1, VMLA/VFMA 3, VDIV/VSQRT 14,
  VLDR/VSTR 2, VLDM/VSTM 1+N). P is taken as 2, the middle of the documented 1-3;
  a divide as 7, the middle of 2-12.
- **Cortex-M33** — its TRM (Arm DDI 0629) publishes no instruction timings. Like
  the M4 it is a three-stage, single-issue ARMv8-M mainline core with the same
  DSP and single-precision FP instructions; LLVM schedules ``cortex-m33`` with the
  Cortex-M4 model (``ProcessorModel<"cortex-m33", CortexM4Model, ...>`` in
  ARM.td). The M4 table is used unchanged, as that documented approximation; what
  differs on a real board is left to the board's calibrated memory constant.
- **Cortex-M0+** — Arm Cortex-M0+ Technical Reference Manual r0p1 (DDI 0484C), §3.3
  "Instruction set summary", cycle counts (two-stage pipeline): data processing 1;
  MULS 1 with the fast multiplier (32 with the small one; RP2040 has the fast one);
  LDR/STR 2; LDM/STM/PUSH/POP 1+N, POP with PC 3+N; B taken 2 (not taken 1), BL 3,
  BX/BLX 2; DMB/DSB/ISB/MRS/MSR 3.
- **Cortex-M7** — its TRM (Arm DDI 0489) gives the pipeline (six stages, in-order,
  dual issue, branch prediction) but no cycle tables. The issue rules and
  latencies are those of LLVM's Cortex-M7 scheduling model (ARMScheduleM7.td,
  contributed by Arm; GCC's cortex-m7.md agrees): two ALUs, two load ports, one
  store port, one MAC, one branch unit, one FPU; LDRD/STRD, LDM/STM, divides and
  system instructions issue alone; word loads have a one-cycle load-use latency,
  byte/halfword loads two; address operands are read one stage early; 64-bit
  memory path (LDM moves two registers a cycle); mispredicted branch 4 cycles.
  **Documented approximation**: dual issue is counted statically per block (greedy
  in-order pairing under those rules, :func:`.isa_classes._m7_can_pair`), each
  pair saving one cycle; taken branches are assumed predicted (BTAC hit, no
  bubble) except a loop's exit, which is charged the 4-cycle mispredict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sweep.runtimes.cortex_m.mix import ALL_FEATURES, InstructionMix


@dataclass(frozen=True)
class CoreTiming:
    """Cycles of one core, at zero wait states, per unit of each mix feature."""

    core: str
    weights: Mapping[str, float]
    source: str
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Features whose cycles the manual gives as a range (low, high): the band's edges."""

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(ALL_FEATURES)
        if unknown:
            raise ValueError(f"{self.core}: unknown mix features {sorted(unknown)}")

    def breakdown(self, mix: InstructionMix) -> dict[str, float]:
        """Cycles per feature (nonzero terms only)."""
        return {f: w * mix[f] for f, w in self.weights.items() if w and mix[f]}

    def cycles(self, mix: InstructionMix) -> float:
        return sum(self.breakdown(mix).values())

    def cycles_range(self, mix: InstructionMix) -> tuple[float, float]:
        """Cycles with every ranged feature at its documented low and high end."""
        point = self.cycles(mix)
        low = point + sum(
            (lo - self.weights.get(f, 0)) * mix[f] for f, (lo, _) in self.ranges.items()
        )
        high = point + sum(
            (hi - self.weights.get(f, 0)) * mix[f] for f, (_, hi) in self.ranges.items()
        )
        return low, high


_P_M4 = 2.0  # pipeline refill after a taken branch: 1-3 cycles (M4 TRM Table 3-1, "P")

_M4_WEIGHTS: dict[str, float] = {
    "alu": 1, "mul": 1, "mac": 1, "mul_long": 1, "simd": 1, "div": 7,
    "load": 2, "store": 1, "load_double": 3, "store_double": 3,
    "load_multiple": 1, "store_multiple": 1, "ldm_registers": 1, "stm_registers": 1,
    "branch": 1, "cond_branch": 1, "call": 1, "indirect_branch": 1, "it": 1,
    "taken": _P_M4, "pc_loads": 1,  # LDR/POP pc: the refill is 3, one more than P
    "ls_after_load": -1, "agu_after_alu": 1,
    "fpu": 1, "fpu_mac": 3, "fpu_div": 14, "fpu_load": 2, "fpu_store": 2,
    "fpu_multiple": 1, "fpu_words": 1, "fpu_move": 1,
    "system": 2, "nop": 1,
}  # fmt: skip

_M0PLUS_WEIGHTS: dict[str, float] = {
    "alu": 1, "mul": 1, "load": 2, "store": 2,
    "load_multiple": 1, "store_multiple": 1, "ldm_registers": 1, "stm_registers": 1,
    # B/B<cond> 1 + 1 when taken = 2; BL 2 + 1 = 3; BX/BLX/MOV pc 1 + 1 = 2; POP pc 1+N+1+1
    "branch": 1, "cond_branch": 1, "call": 2, "indirect_branch": 1,
    "taken": 1, "pc_loads": 1,
    "system": 3, "nop": 1,
}  # fmt: skip

_M7_WEIGHTS: dict[str, float] = {
    # one issue slot per instruction, minus one per dual-issued pair
    "alu": 1, "mul": 1, "mac": 1, "mul_long": 1, "simd": 1, "div": 7,
    "load": 1, "store": 1, "load_double": 1, "store_double": 1,
    "load_multiple": 1, "store_multiple": 1, "ldm_registers": 0.5, "stm_registers": 0.5,
    "branch": 1, "cond_branch": 1, "call": 1, "indirect_branch": 1, "it": 1,
    "m7_pairs": -1, "narrow_load_use": 1, "agu_after_alu": 1, "loop_exits": 4,
    "fpu": 1, "fpu_mac": 1, "fpu_div": 16, "fpu_load": 1, "fpu_store": 1,
    "fpu_multiple": 1, "fpu_words": 0.5, "fpu_move": 1,
    "system": 3, "nop": 1,
}  # fmt: skip

_M4_RANGES = {"taken": (1.0, 3.0), "div": (2.0, 12.0)}  # P = 1-3; SDIV/UDIV 2-12
_M7_RANGES = {"loop_exits": (4.0, 6.0), "div": (2.0, 12.0), "taken": (0.0, 1.0)}

CORES: dict[str, CoreTiming] = {
    "cortex-m4f": CoreTiming(
        "cortex-m4f",
        _M4_WEIGHTS,
        "Cortex-M4 TRM r0p1 §3.3.1 Table 3-1, §3.3.2, §7.2 Table 7-1",
        _M4_RANGES,
    ),
    "cortex-m33": CoreTiming(
        "cortex-m33",
        _M4_WEIGHTS,
        "Cortex-M4 TRM timings (the M33 TRM publishes none; LLVM schedules cortex-m33 "
        "with its Cortex-M4 model)",
        _M4_RANGES,
    ),
    "cortex-m0plus": CoreTiming(
        "cortex-m0plus", _M0PLUS_WEIGHTS, "Cortex-M0+ TRM r0p1 §3.3 (fast multiplier)"
    ),
    "cortex-m7": CoreTiming(
        "cortex-m7",
        _M7_WEIGHTS,
        "dual-issue rules and latencies of LLVM's ARMScheduleM7.td (Arm); the Cortex-M7 "
        "TRM publishes no cycle tables",
        _M7_RANGES,
    ),
}
"""CPU name (as in :data:`~sweep.runtimes.cortex_m.cpus.CPUS`) -> its timing table."""


def core_timing(cpu: str) -> CoreTiming:
    try:
        return CORES[cpu]
    except KeyError:
        raise ValueError(f"no timing table for cpu {cpu!r}; known: {', '.join(CORES)}") from None
