"""Emulate a deploy bundle on a Cortex-M CPU: exact instruction count, outputs, footprint.

Ties the parts together: the cached library (:mod:`.library`), the bundle's
firmware (:mod:`.firmware`), the emulator (:mod:`.emulator`) and the shared
memory protocol (:mod:`.protocol`), and turns what comes back into an
:class:`EmulationResult`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from unicorn import arm_const

from sweep.runtimes.cortex_m.cpus import cpu_spec
from sweep.runtimes.cortex_m.emulator import Run
from sweep.runtimes.cortex_m.firmware import Firmware, FirmwareBuilder, bundle_arena_bytes
from sweep.runtimes.cortex_m.library import build_library
from sweep.runtimes.cortex_m.mix import InstructionMix
from sweep.runtimes.cortex_m.protocol import (
    STATUS_ALLOCATE_FAILED,
    TFLITE_DTYPES,
    FirmwareError,
    check,
    execute,
)

log = logging.getLogger(__name__)

_PROBE_ARENA_BYTES = 4 * 1024 * 1024
"""Arena of the one-off run that asks TFLM how much arena this build really needs."""


@dataclass
class EmulationResult:
    """One bundle run on one emulated CPU.

    ``instructions``: instructions of one ``Invoke()`` after a warm-up invoke
    (plus a constant ~6 of the harness's call/return around it), the same on
    every run. ``instructions_per_image``: the same count for every input image
    (data-dependent code paths make them differ slightly). ``outputs``: output 0
    per image, raw, in the model's output dtype, shape (N, num_outputs).
    ``firmware_flash_bytes``: text+rodata+data of the linked ELF;
    ``firmware_ram_bytes``: data+bss, the arena included (not the stack,
    reported separately as measured ``stack_bytes``). ``arena_margin_bytes``: how
    much the 32-bit build needed above the bundle's ``kTensorArenaSize`` (0 when
    that sufficed). ``mix``: the counted invoke's instructions per class, taken and
    not-taken branches and pair facts (:mod:`.mix`; ``mix.instructions ==
    instructions``), what :func:`~sweep.runtimes.cortex_m.timing.estimate` turns into
    cycles. Not-emulated CPUs (``emulated`` False) carry only ``reason``.
    """

    cpu: str
    emulated: bool = True
    reason: str = ""
    instructions: int | None = None
    warmup_instructions: int | None = None
    instructions_per_image: list[int] = field(default_factory=list)
    mix: InstructionMix | None = None
    outputs: np.ndarray | None = None
    predictions: np.ndarray | None = None
    firmware_flash_bytes: int | None = None
    firmware_ram_bytes: int | None = None
    arena_bytes: int | None = None
    arena_used_bytes: int | None = None
    arena_margin_bytes: int = 0
    stack_bytes: int | None = None
    library_build_seconds: float = 0.0
    build_seconds: float = 0.0
    run_seconds: float = 0.0


def emulate(
    bundle_dir: Path,
    cpu: str,
    inputs: np.ndarray,
    *,
    work_dir: Path | None = None,
    kernels: str | None = "cmsis_nn",
) -> EmulationResult:
    """Build ``bundle_dir`` for ``cpu``, run it in the emulator on ``inputs``, report.

    ``inputs``: (N, ...) already in the model's input dtype and shape (N >= 1);
    input 0 and output 0 only. ``work_dir`` keeps the objects, ELF and map file
    (a temporary folder otherwise). The first call per CPU builds the TFLM
    library (minutes, cached; see :mod:`~sweep.runtimes.cortex_m.library`).
    ``kernels=None`` uses TFLM's reference kernels instead of CMSIS-NN (a
    separate library build), to see what CMSIS-NN gains.
    """
    spec = cpu_spec(cpu)
    if not spec.emulated:
        return EmulationResult(cpu=cpu, emulated=False, reason=spec.reason)
    inputs = np.asarray(inputs)
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must be (N, ...) with N >= 1, got shape {inputs.shape}")
    bundle_arena = bundle_arena_bytes(bundle_dir)
    start = time.perf_counter()
    lib = build_library(cpu, kernels)
    library_seconds = lib.build_seconds if lib.built_now else 0.0
    cpu_model = getattr(arm_const, spec.unicorn_model)
    with tempfile.TemporaryDirectory(prefix="sweep-cortex-m-") as tmp:
        builder = FirmwareBuilder(lib, bundle_dir, Path(work_dir) if work_dir else Path(tmp))
        build_start = time.perf_counter()
        firmware = builder.build(bundle_arena)
        build_seconds = time.perf_counter() - build_start
        run_start = time.perf_counter()
        io, run, _ = execute(firmware, cpu_model, inputs)
        if io["status"] == STATUS_ALLOCATE_FAILED:
            firmware, extra = _bigger_arena(builder, cpu_model, inputs, cpu, bundle_arena)
            build_seconds += extra
            io, run, _ = execute(firmware, cpu_model, inputs)
        check(io, cpu)
        run_seconds = time.perf_counter() - run_start
        result = _result(cpu, firmware, io, run, inputs, bundle_arena)
    result.library_build_seconds = library_seconds
    result.build_seconds = round(build_seconds, 3)
    result.run_seconds = round(run_seconds, 3)
    log.info(
        "%s: %d instructions per invoke, flash %d B, RAM %d B (built in %.1f s, emulated %d "
        "images in %.1f s, %.0f s in total)",
        cpu,
        result.instructions,
        result.firmware_flash_bytes,
        result.firmware_ram_bytes,
        build_seconds,
        len(inputs),
        run_seconds,
        time.perf_counter() - start,
    )
    return result


def _bigger_arena(
    builder: FirmwareBuilder, cpu_model: int, inputs: np.ndarray, cpu: str, bundle_arena: int
) -> tuple[Firmware, float]:
    """Firmware whose arena is what this CPU's build really needs.

    The bundle's arena was measured with the host build's reference kernels;
    optimized kernels may ask for scratch buffers on top. One run in a large
    arena tells TFLM's own ``arena_used_bytes()``; the firmware is then rebuilt
    with exactly that (rounded up to 16 bytes).
    """
    start = time.perf_counter()
    probe = builder.build(max(_PROBE_ARENA_BYTES, 4 * bundle_arena))
    io, _, _ = execute(probe, cpu_model, inputs[:1])
    check(io, cpu)
    needed = (io["arena_used_bytes"] + 15) // 16 * 16
    log.info(
        "%s: the bundle's arena (%d B) is too small for this build; it needs %d B (+%d B)",
        cpu,
        bundle_arena,
        needed,
        needed - bundle_arena,
    )
    return builder.build(needed), time.perf_counter() - start


def _result(
    cpu: str, firmware: Firmware, io: dict, run: Run, inputs: np.ndarray, bundle_arena: int
) -> EmulationResult:
    dtype = TFLITE_DTYPES.get(io["output_type"])
    if dtype is None:
        raise FirmwareError(f"{cpu} firmware: unsupported output type code {io['output_type']}")
    in_dtype = TFLITE_DTYPES.get(io["input_type"])
    if in_dtype is not None and np.dtype(in_dtype) != inputs.dtype:
        raise ValueError(
            f"inputs are {inputs.dtype} but the model's input 0 is {np.dtype(in_dtype)}: "
            "convert them first (sweep.tensors.to_model_input)"
        )
    n = len(inputs)
    outputs = np.frombuffer(io["outputs"], dtype=dtype).reshape(n, -1).copy()
    windows = _invoke_windows(run.marks)
    counts = [run.marks[end][1] - run.marks[begin][1] for begin, end in windows]
    if len(counts) != n + 2:
        raise FirmwareError(f"{cpu} firmware: expected {n + 2} invokes, saw {len(counts)}")
    return EmulationResult(
        cpu=cpu,
        instructions=counts[1],
        mix=run.mix(*windows[1]),
        warmup_instructions=counts[0],
        instructions_per_image=counts[2:],
        outputs=outputs,
        predictions=outputs.argmax(axis=1),
        firmware_flash_bytes=firmware.flash_bytes,
        firmware_ram_bytes=firmware.ram_bytes,
        arena_bytes=firmware.arena_bytes,
        arena_used_bytes=io["arena_used_bytes"],
        arena_margin_bytes=max(0, firmware.arena_bytes - bundle_arena),
        stack_bytes=io["stack_bytes"],
    )


def _invoke_windows(marks: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Mark indices of each sweep_invoke_begin and the sweep_invoke_end that follows it."""
    windows, begin = [], None
    for index, (name, _count) in enumerate(marks):
        if name == "begin":
            begin = index
        elif begin is not None:
            windows.append((begin, index))
            begin = None
    return windows
