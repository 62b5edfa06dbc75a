"""The per-model build: each bundle compiled and linked into its own firmware, every
instruction counted. The reference the runner is checked against.

This is how every model was measured before the runner (:mod:`.run`): seconds of
compile and link per model, then the whole run under the counting hook. It stays
because it defines the figures: the runner's counts and the footprint's flash and
RAM must equal what this build gives (``tests/test_board_parity.py``,
``benchmarks/board_cost.py``), and :func:`sweep.runtimes.cortex_m.emulate` falls
back to it if the runner's harness ever differs from a per-model one.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from unicorn import arm_const

from sweep.runtimes.bundle import read_model
from sweep.runtimes.cortex_m.cpus import cpu_spec
from sweep.runtimes.cortex_m.firmware import (
    BundleError,
    Firmware,
    FirmwareBuilder,
    bundle_arena_bytes,
)
from sweep.runtimes.cortex_m.library import build_library
from sweep.runtimes.cortex_m.protocol import (
    STATUS_ALLOCATE_FAILED,
    FirmwareError,
    check,
    execute,
    invoke_counts,
    invoke_windows,
)
from sweep.runtimes.cortex_m.run import (
    PROBE_ARENA_BYTES,
    EmulationResult,
    model_operators,
    outputs_of,
)
from sweep.runtimes.flatbuffer import operator_codes

log = logging.getLogger(__name__)


def emulate_per_model(
    bundle_dir: Path,
    cpu: str,
    inputs: np.ndarray,
    *,
    work_dir: Path | None = None,
    kernels: str | None = "cmsis_nn",
    whole_library: bool = False,
) -> EmulationResult:
    """Build ``bundle_dir`` for ``cpu``, run it in the emulator on ``inputs``, report.

    ``inputs``: (N, ...) already in the model's input dtype and shape (N >= 1);
    input 0 and output 0 only. ``work_dir`` keeps the objects, ELF and map file
    (a temporary folder otherwise). ``whole_library`` links against every operator's
    kernel instead of the model's operators' only (what every build did before the
    library was kept per operator; the figures must not differ).
    """
    spec = cpu_spec(cpu)
    if not spec.emulated:
        return EmulationResult(cpu=cpu, emulated=False, reason=spec.reason)
    inputs = np.asarray(inputs)
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must be (N, ...) with N >= 1, got shape {inputs.shape}")
    bundle_arena = bundle_arena_bytes(bundle_dir)
    try:
        operators = model_operators(operator_codes(read_model(bundle_dir)))
    except (OSError, ValueError) as error:
        raise BundleError(str(error)) from None
    lib = build_library(cpu, kernels, operators=None if whole_library else operators)
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
        counts = invoke_counts(run.marks)
        if len(counts) != len(inputs) + 2:
            raise FirmwareError(
                f"{cpu} firmware: expected {len(inputs) + 2} invokes, saw {len(counts)}"
            )
        outputs = outputs_of(io, inputs, cpu)
        mix = run.mix(*invoke_windows(run.marks)[1])
    return EmulationResult(
        cpu=cpu,
        instructions=counts[1],
        mix=mix,
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
        library_build_seconds=lib.build_seconds if lib.built_now else 0.0,
        build_seconds=round(build_seconds, 3),
        run_seconds=round(run_seconds, 3),
    )


def _bigger_arena(
    builder: FirmwareBuilder, cpu_model: int, inputs: np.ndarray, cpu: str, bundle_arena: int
) -> tuple[Firmware, float]:
    """Firmware whose arena is what this CPU's build really needs (see :func:`.run.emulate`)."""
    start = time.perf_counter()
    probe = builder.build(max(PROBE_ARENA_BYTES, 4 * bundle_arena))
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
