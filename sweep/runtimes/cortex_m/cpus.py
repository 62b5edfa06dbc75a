"""The CPUs a target can name, and how each is built and emulated.

One table, so that adding a core is one entry: TFLM's ``cortex_m_generic``
target (it honours ``-mfloat-abi=hard``; ``cortex_m_qemu`` forces soft float,
which would make a Cortex-M4F count the instructions of a software float
library it never runs) with the ``TARGET_ARCH``/``FPU`` that match the board's
core, and the Unicorn CPU model that executes that instruction set.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CpuSpec:
    """How to build for and emulate one CPU.

    ``target_arch``/``fpu``: TFLM Makefile variables (``cortex_m_generic``).
    ``unicorn_model``: name of the ``unicorn.arm_const`` CPU model constant;
    ``None`` for CPUs no emulator here can run (then ``reason`` says why).
    """

    name: str
    target_arch: str | None
    fpu: str | None
    unicorn_model: str | None
    extra_make_args: tuple[str, ...] = ()
    note: str = ""
    reason: str = ""

    @property
    def emulated(self) -> bool:
        return self.unicorn_model is not None

    def make_args(self, optimized_kernels: str | None = "cmsis_nn") -> list[str]:
        """The TFLM ``make`` variables that select this CPU's library."""
        if self.target_arch is None:
            raise ValueError(f"{self.name} has no TFLM Cortex-M build: {self.reason}")
        args = [
            "TARGET=cortex_m_generic",
            f"TARGET_ARCH={self.target_arch}",
            # -DNDEBUG (no DCHECKs) but TFLM's error messages kept: what TFLM recommends
            # for benchmarking; its default optimization levels (-Os core, -O2 kernels) stay.
            "BUILD_TYPE=release_with_logs",
        ]
        if self.fpu:
            args.append(f"FPU={self.fpu}")
        args += self.extra_make_args
        if optimized_kernels:
            args.append(f"OPTIMIZED_KERNEL_DIR={optimized_kernels}")
        return args


CPUS: dict[str, CpuSpec] = {
    spec.name: spec
    for spec in (
        CpuSpec(
            name="cortex-m4f",
            target_arch="cortex-m4+fp",
            fpu=None,  # -mfpu=auto with -mcpu=cortex-m4: fpv4-sp-d16, hard-float ABI
            unicorn_model="UC_CPU_ARM_CORTEX_M4",
        ),
        CpuSpec(
            name="cortex-m7",
            target_arch="cortex-m7+fp",
            fpu="fpv5-sp-d16",  # the STM32F746's single-precision FPU
            unicorn_model="UC_CPU_ARM_CORTEX_M7",
        ),
        CpuSpec(
            name="cortex-m33",
            # TFLM's cortex-m33 (not cortex-m33+nodsp): GCC's -mcpu=cortex-m33 is
            # armv8-m.main+dsp+fp, so __ARM_FEATURE_DSP is 1 and CMSIS-NN takes the same
            # DSP (SMLAD/SXTB16) path as on the Cortex-M4; -mfpu=auto gives fpv5-sp-d16 with
            # the hard-float ABI.
            target_arch="cortex-m33",
            fpu=None,
            unicorn_model="UC_CPU_ARM_CORTEX_M33",
        ),
        CpuSpec(
            name="cortex-m0plus",
            target_arch="cortex-m0plus",
            fpu=None,  # no FPU: soft float
            unicorn_model="UC_CPU_ARM_CORTEX_M0",
            # The offline Cortex_DFP snapshot has no ARMCM0plus.h; the M0 device header only
            # names the core for CMSIS (code is still compiled with -mcpu=cortex-m0plus).
            extra_make_args=("CORE=M0",),
            note="Unicorn has no Cortex-M0+ model; its Cortex-M0 runs the same ARMv6-M "
            "instruction set, so the instruction count is the M0+'s.",
        ),
        CpuSpec(
            name="xtensa-lx6",
            target_arch=None,
            fpu=None,
            unicorn_model=None,
            reason="xtensa-lx6 (ESP32) is an Xtensa CPU: not emulated (only Arm Cortex-M "
            "CPUs are built with CMSIS-NN and run in the Unicorn emulator)",
        ),
    )
}
"""CPU name -> build flags and emulator model (``unicorn_model`` is None for xtensa-lx6)."""


def cpu_spec(cpu: str) -> CpuSpec:
    """The table entry for ``cpu``; a ValueError naming the known CPUs otherwise."""
    try:
        return CPUS[cpu]
    except KeyError:
        raise ValueError(f"unknown cpu {cpu!r}; known: {', '.join(CPUS)}") from None


def is_emulated(cpu: str) -> bool:
    """True if models for ``cpu`` can be built and run in the emulator here."""
    return cpu_spec(cpu).emulated
