"""Emulate a model on a Cortex-M CPU: exact instruction count, outputs, footprint.

Per model, nothing is built. The model's bytes go into the per-CPU runner
(:mod:`.runner`), which counts its counted invoke exactly and runs the rest at
the emulator's full speed under the model's instruction budget (:mod:`.budget`);
the flash and RAM of the model's own firmware come from :mod:`.footprint`
(cached per operator set and arena class). Both equal what a per-model build gives
(:mod:`.per_model`, kept as the reference): the count because Invoke() is the
same code of the same library on the same bytes, and the few harness
instructions around it are read from both builds' machine code (:mod:`.window`;
anything unreadable sends the model to the per-model build instead); the sizes
because they are a per-model link's, worked out exactly.

A model the firmware cannot run is a verdict, not an error: an
:class:`EmulationResult` with ``emulated`` False and the reason (a custom or
unknown operator, no budget left).
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from unicorn import arm_const

from sweep.runtimes.bundle import read_model, resolver_source, write_bundle
from sweep.runtimes.cortex_m.budget import Budget, instruction_budget
from sweep.runtimes.cortex_m.cpus import cpu_spec
from sweep.runtimes.cortex_m.emulator import InstructionBudgetExceeded
from sweep.runtimes.cortex_m.firmware import BundleError, bundle_arena_bytes
from sweep.runtimes.cortex_m.footprint import footprint
from sweep.runtimes.cortex_m.library import build_library
from sweep.runtimes.cortex_m.mix import InstructionMix
from sweep.runtimes.cortex_m.ops import builtin_methods
from sweep.runtimes.cortex_m.protocol import (
    STATUS_ALLOCATE_FAILED,
    TFLITE_DTYPES,
    FirmwareError,
    check,
    execute_runner,
)
from sweep.runtimes.cortex_m.runner import Runner, runner_for
from sweep.runtimes.cortex_m.toolchain import third_party_root
from sweep.runtimes.flatbuffer import OperatorCode, operator_codes
from sweep.settings import ConfigError

log = logging.getLogger(__name__)

PROBE_ARENA_BYTES = 4 * 1024 * 1024
"""Arena of the one-off run that asks TFLM how much arena this build really needs."""


@dataclass
class EmulationResult:
    """One model run on one emulated CPU.

    ``instructions``: instructions of one ``Invoke()`` of image 0 after a warm-up
    invoke (plus the ~4 of the harness's call/return around it), the same on every
    run and equal to a per-model build's. ``outputs``: output 0 per image, raw, in
    the model's output dtype, shape (N, num_outputs); ``predictions`` their argmax.
    ``instructions_per_image`` / ``warmup_instructions``: counted by the per-model
    build only (:func:`~sweep.runtimes.cortex_m.per_model.emulate_per_model`); the
    runner runs those invokes uncounted, at full speed (empty / None).
    ``firmware_flash_bytes``: text+rodata+data of the model's own
    firmware; ``firmware_ram_bytes``: data+bss, the arena included (not the
    stack: ``stack_bytes``, measured on the runner, whose main() frame is not the
    per-model one). ``arena_margin_bytes``: how much the 32-bit build needed above
    the bundle's ``kTensorArenaSize`` (0 when that sufficed). Not emulated
    (``emulated`` False): only ``reason``. ``mix``: the counted invoke's instructions
    per class, taken and not-taken branches and pair facts (:mod:`.mix`), what
    :func:`~sweep.runtimes.cortex_m.estimate.estimate` turns into cycles.
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


def outputs_of(io: dict, inputs: np.ndarray, cpu: str) -> np.ndarray:
    """Output 0 per image from the I/O block, in the model's output dtype."""
    dtype = TFLITE_DTYPES.get(io["output_type"])
    if dtype is None:
        raise FirmwareError(f"{cpu} firmware: unsupported output type code {io['output_type']}")
    in_dtype = TFLITE_DTYPES.get(io["input_type"])
    if in_dtype is not None and np.dtype(in_dtype) != inputs.dtype:
        raise ValueError(
            f"inputs are {inputs.dtype} but the model's input 0 is {np.dtype(in_dtype)}: "
            "convert them first (sweep.tensors.to_model_input)"
        )
    return np.frombuffer(io["outputs"], dtype=dtype).reshape(len(inputs), -1).copy()


def emulate(
    bundle_dir: Path,
    cpu: str,
    inputs: np.ndarray,
    *,
    work_dir: Path | None = None,
    kernels: str | None = "cmsis_nn",
) -> EmulationResult:
    """Run the bundle in ``bundle_dir`` on an emulated ``cpu``: :func:`emulate_model` with
    the bundle's model and ``kTensorArenaSize``. ``work_dir`` is not used (nothing is
    built per model); it stays for callers of the per-model build's signature."""
    spec = cpu_spec(cpu)
    if not spec.emulated:
        return EmulationResult(cpu=cpu, emulated=False, reason=spec.reason)
    arena = bundle_arena_bytes(bundle_dir)
    try:
        model = read_model(bundle_dir)
    except (OSError, ValueError) as error:
        raise BundleError(str(error)) from None
    return emulate_model(model, cpu, inputs, arena_bytes=arena, kernels=kernels)


def model_operators(codes: list[OperatorCode]) -> frozenset[str]:
    """The builtin operators a model's firmware registers: those its graph uses."""
    return frozenset(c.name for c in codes if c.used and c.known and not c.custom)


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)


def unsupported(codes: list[OperatorCode]) -> str:
    """Why the firmware cannot run a model with operator ``codes`` ('' if it can): an
    operator without a kernel."""
    known = builtin_methods(third_party_root() / "tflite-micro")
    for code in codes:
        if not code.used:
            continue
        if code.custom:
            return (
                f"the model uses custom operator {code.name[len('CUSTOM:') :]}, which has no "
                "kernel in the firmware (custom operators are the user's to register)"
            )
        if not code.known:
            return f"the model uses builtin operator code {code.builtin}, unknown to this TFLM"
        if code.name not in known:
            return f"TFLM has no kernel for builtin operator {code.name}"
    return ""


def emulate_model(
    model: bytes,
    cpu: str,
    inputs: np.ndarray,
    *,
    arena_bytes: int,
    kernels: str | None = "cmsis_nn",
) -> EmulationResult:
    """Run ``model`` (a ``.tflite`` file's bytes) on an emulated ``cpu`` with an arena of
    ``arena_bytes`` (the bundle's ``kTensorArenaSize``), on ``inputs``.

    ``inputs``: (N, ...) already in the model's input dtype and shape (N >= 1);
    input 0 and output 0 only. The first call per CPU builds the TFLM library
    (minutes, cached; see :mod:`.library`) and the runner (seconds); a new operator
    set or arena class costs one footprint build (seconds, cached). ``kernels=None`` uses
    TFLM's reference kernels instead of CMSIS-NN (a separate library).
    """
    spec = cpu_spec(cpu)
    if not spec.emulated:
        return EmulationResult(cpu=cpu, emulated=False, reason=spec.reason)
    inputs = np.asarray(inputs)
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must be (N, ...) with N >= 1, got shape {inputs.shape}")
    start = time.perf_counter()
    codes = operator_codes(model)
    try:
        why = unsupported(codes)
        if why:
            return EmulationResult(cpu=cpu, emulated=False, reason=why)
        lib = build_library(cpu, kernels, operators=model_operators(codes))
        runner = runner_for(lib)
    except ConfigError as error:
        _warn_once(f"{error} Going on without the emulator's figures.")
        return EmulationResult(cpu=cpu, emulated=False, reason=str(error))
    setup_seconds = time.perf_counter() - start
    ops = sorted({c.builtin for c in codes if c.used and c.known and not c.custom})
    resolver = resolver_source(codes)
    budget = instruction_budget(model, len(inputs))
    cpu_model = getattr(arm_const, spec.unicorn_model)
    run_start = time.perf_counter()
    try:
        run = execute_runner(runner, cpu_model, model, ops, inputs, arena_bytes, budget)
        arena = arena_bytes
        if run.io["status"] == STATUS_ALLOCATE_FAILED:
            arena = _needed_arena(runner, cpu_model, model, ops, inputs, arena_bytes, budget)
            run = execute_runner(runner, cpu_model, model, ops, inputs, arena, budget)
    except InstructionBudgetExceeded:
        return EmulationResult(
            cpu=cpu, emulated=False, reason=f"did not finish within {budget.describe()}"
        )
    check(run.io, cpu)
    run_seconds = time.perf_counter() - run_start
    fp = footprint(runner, resolver, arena, len(model))
    runner_window = runner.windows.get(run.call_site) if run.counted else None
    if fp.window is None or runner_window is None:
        log.warning(
            "%s: the harness instructions around Invoke() cannot be read (per-model %s, "
            "runner %s): measuring this model with the per-model build instead",
            cpu,
            fp.window,
            runner_window,
        )
        return _per_model(model, cpu, inputs, arena_bytes, kernels)
    outputs = outputs_of(run.io, inputs, cpu)
    instructions = run.counted.instructions - runner_window + fp.window
    log.info(
        "%s: %d instructions per invoke, flash %d B, RAM %d B, emulated %d images in %.1f s "
        "(%.1f s in total)",
        cpu,
        instructions,
        fp.flash_bytes,
        fp.ram_bytes,
        len(inputs),
        run_seconds,
        time.perf_counter() - start,
    )
    return EmulationResult(
        cpu=cpu,
        instructions=instructions,
        # The harness's few instructions around Invoke() differ between the runner and a
        # per-model image (straight-line ALU and call code): the count is the per-model
        # one, and so is the mix's total.
        mix=run.counted.mix().plus("alu", fp.window - runner_window),
        outputs=outputs,
        predictions=outputs.argmax(axis=1),
        firmware_flash_bytes=fp.flash_bytes,
        firmware_ram_bytes=fp.ram_bytes,
        arena_bytes=arena,
        arena_used_bytes=run.io["arena_used_bytes"],
        arena_margin_bytes=max(0, arena - arena_bytes),
        stack_bytes=run.io["stack_bytes"],
        library_build_seconds=round(setup_seconds, 3) if lib.built_now or runner.built_now else 0.0,
        build_seconds=round(time.perf_counter() - start - setup_seconds - run_seconds, 3),
        run_seconds=round(run_seconds, 3),
    )


def _needed_arena(
    runner: Runner,
    cpu_model: int,
    model: bytes,
    ops: list[int],
    inputs: np.ndarray,
    bundle_arena: int,
    budget: Budget,
) -> int:
    """The arena this CPU's build really needs, when the bundle's is too small.

    The bundle's arena was measured with the host build's reference kernels;
    optimized kernels may ask for scratch buffers on top. One run in a large
    arena tells TFLM's own ``arena_used_bytes()``, rounded up to 16 bytes.
    """
    big = max(PROBE_ARENA_BYTES, 4 * bundle_arena)
    probe = execute_runner(runner, cpu_model, model, ops, inputs[:1], big, budget)
    check(probe.io, runner.cpu)
    needed = (probe.io["arena_used_bytes"] + 15) // 16 * 16
    log.info(
        "%s: the bundle's arena (%d B) is too small for this build; it needs %d B (+%d B)",
        runner.cpu,
        bundle_arena,
        needed,
        needed - bundle_arena,
    )
    return needed


def _per_model(
    model: bytes, cpu: str, inputs: np.ndarray, arena_bytes: int, kernels: str | None
) -> EmulationResult:
    from sweep.runtimes.cortex_m.per_model import emulate_per_model

    with tempfile.TemporaryDirectory(prefix="sweep-bundle-") as tmp:
        write_bundle(model, Path(tmp), arena_bytes=arena_bytes)
        return emulate_per_model(Path(tmp), cpu, inputs, kernels=kernels)
