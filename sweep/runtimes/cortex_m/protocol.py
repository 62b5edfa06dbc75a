"""The memory the host and the firmware share: how images go in and results come out.

One block at :data:`~sweep.runtimes.cortex_m.emulator.IO_BASE`: a header of
32-bit words (:data:`IO_FIELDS`, the order of ``struct SweepIo`` in
``firmware/harness.h``), TFLM's log, then the images and the outputs. Everything
the firmware learns (tensor sizes and types, the arena it really used, why it
failed) comes back through that header, so no semihosting or UART needs parsing.
The runner (``firmware/runner.cc``) also reads, at :data:`RUNNER_OFFSET` of the
same page, where the host put the model and the arena and which operators to
register (:data:`RUNNER_FIELDS`).

Two ways to run: :func:`execute` counts every instruction of a per-model ELF
(the reference); :func:`execute_runner` counts only the counted invoke exactly
and runs everything else (start-up, warm-up, the images) at the emulator's full
speed under the model's instruction budget (:mod:`.budget`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from unicorn import arm_const

from sweep.runtimes.cortex_m.budget import Budget
from sweep.runtimes.cortex_m.emulator import (
    FLASH_BASE,
    FLASH_BYTES,
    IO_BASE,
    RAM_BASE,
    RAM_BYTES,
    CortexM,
    EmulationError,
    Run,
    page_round,
)
from sweep.runtimes.cortex_m.firmware import Firmware, symbols
from sweep.runtimes.cortex_m.runner import Runner

IO_FIELDS = [
    "magic",
    "num_images",
    "inputs_offset",
    "outputs_offset",
    "io_bytes",
    "image_bytes",
    "status",
    "input_bytes",
    "output_bytes",
    "input_type",
    "output_type",
    "arena_bytes",
    "arena_used_bytes",
    "failed_image",
    "log_len",
]
_LOG_OFFSET = 4 * len(IO_FIELDS)
_HEADER_BYTES = 0x1000
_MAGIC = 0x4F495753
_OUTPUT_ROOM = 16 * 1024 * 1024
_STATUS = {
    0: "the firmware stopped before finishing",
    1: "ok",
    2: "the host's I/O block was not seen",
    3: "the model's schema version does not match TFLM's",
    4: "registering the model's operators failed",
    5: "AllocateTensors failed (arena too small?)",
    6: "the model has no input 0 / output 0",
    7: "the images do not fit the I/O block",
    8: "Invoke failed",
    9: "the images' size does not match the model's input tensor",
}
STATUS_OK, STATUS_ALLOCATE_FAILED = 1, 5
BEGIN, END = "sweep_invoke_begin", "sweep_invoke_end"
RUNNER_OFFSET, RUNNER_MAGIC = 0xC00, 0x4E555753
RUNNER_FIELDS = ["magic", "model_address", "model_bytes", "arena_address", "arena_bytes", "num_ops"]
OPS_OFFSET = 0xC40
MAX_OPS = (_HEADER_BYTES - OPS_OFFSET) // 4
STACK_RESERVE = 256 * 1024
"""RAM above the arena left to the stack (the deepest seen is a few KB)."""
# TfLiteType codes (tensorflow/lite/core/c/c_api_types.h) -> numpy.
TFLITE_DTYPES = {
    1: np.float32,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
    10: np.float16,
}


class FirmwareError(RuntimeError):
    """The firmware ran but reported a failure (TFLM's own messages included)."""


def _header(num_images: int, image_bytes: int) -> tuple[bytes, int, int, int]:
    inputs_offset = _HEADER_BYTES
    outputs_offset = page_round(inputs_offset + num_images * image_bytes)
    io_bytes = outputs_offset + _OUTPUT_ROOM
    values = dict.fromkeys(IO_FIELDS, 0)
    values.update(
        magic=_MAGIC,
        num_images=num_images,
        inputs_offset=inputs_offset,
        outputs_offset=outputs_offset,
        io_bytes=io_bytes,
        image_bytes=image_bytes,
    )
    return (
        struct.pack(f"<{len(IO_FIELDS)}I", *values.values()),
        inputs_offset,
        outputs_offset,
        io_bytes,
    )


def _read_io(core: CortexM, n: int, outputs_offset: int, stack_from: int) -> dict:
    words = struct.unpack(f"<{len(IO_FIELDS)}I", core.read(IO_BASE, _LOG_OFFSET))
    io = dict(zip(IO_FIELDS, words, strict=True))
    io["log"] = core.read(IO_BASE + _LOG_OFFSET, io["log_len"]).decode(errors="replace")
    if io["status"] == STATUS_OK:
        io["outputs"] = core.read(IO_BASE + outputs_offset, n * io["output_bytes"])
    io["stack_bytes"] = _stack_bytes(core, stack_from)
    return io


def execute(firmware: Firmware, cpu_model: int, inputs: np.ndarray) -> tuple[dict, Run, CortexM]:
    """Run a per-model ELF, counting every instruction (marks around every invoke)."""
    n, image_bytes = inputs.shape[0], inputs[0].nbytes
    header, inputs_offset, outputs_offset, io_bytes = _header(n, image_bytes)
    core = CortexM(firmware.elf, cpu_model, io_bytes)
    core.write(IO_BASE, header)
    core.write(IO_BASE + inputs_offset, np.ascontiguousarray(inputs).tobytes())
    table = symbols(firmware.elf)
    marks = {table["sweep_invoke_begin"]: "begin", table["sweep_invoke_end"]: "end"}
    run = core.run(table["sweep_done"], marks)
    io = _read_io(core, n, outputs_offset, table.get("_end", RAM_BASE))
    return io, run, core


@dataclass
class RunnerRun:
    """What a runner emulation returns: the I/O block, the counted invoke's
    :class:`~sweep.runtimes.cortex_m.emulator.Run` (``None`` if the firmware stopped
    before it) and the return address of the ``sweep_invoke_begin`` call that
    opened it (which call site of the harness it was, see :mod:`.window`)."""

    io: dict
    counted: Run | None
    call_site: int | None


def execute_runner(
    runner: Runner,
    cpu_model: int,
    model: bytes,
    op_codes: list[int],
    inputs: np.ndarray,
    arena_bytes: int,
    budget: Budget,
) -> RunnerRun:
    """Run ``model`` on ``inputs`` in the runner with an arena of ``arena_bytes``.

    Only the counted invoke (image 0 after the warm-up) runs under the counting
    hook; start-up, warm-up and the images run at full speed, each stretch under
    its share of the model's instruction budget.
    """
    n, image_bytes = inputs.shape[0], inputs[0].nbytes
    header, inputs_offset, outputs_offset, io_bytes = _header(n, image_bytes)
    if len(op_codes) > MAX_OPS:
        raise EmulationError(f"{len(op_codes)} operators to register; the runner takes {MAX_OPS}")
    if runner.model_address + len(model) > FLASH_BASE + FLASH_BYTES:
        raise EmulationError(f"the model ({len(model)} bytes) does not fit the emulated flash")
    arena_end = runner.arena_address + arena_bytes
    if arena_end > RAM_BASE + RAM_BYTES - STACK_RESERVE:
        raise EmulationError(f"the arena ({arena_bytes} bytes) does not fit the emulated RAM")
    stack_floor = RAM_BASE + RAM_BYTES - STACK_RESERVE  # the stack's room: scanned for its depth
    core = CortexM(runner.elf, cpu_model, io_bytes)
    core.write(IO_BASE, header)
    core.write(IO_BASE + inputs_offset, np.ascontiguousarray(inputs).tobytes())
    fields = (RUNNER_MAGIC, runner.model_address, len(model), runner.arena_address, arena_bytes)
    core.write(IO_BASE + RUNNER_OFFSET, struct.pack("<6I", *fields, len(op_codes)))
    core.write(IO_BASE + OPS_OFFSET, struct.pack(f"<{len(op_codes)}I", *op_codes))
    core.write(runner.model_address, model)
    begin, end, done = (runner.mark(name) for name in (BEGIN, END, "sweep_done"))
    per = budget.per_invoke
    # Start-up, the warm-up, then on to the counted invoke; a failure ends in sweep_done.
    for k, (stop, most) in enumerate([(begin, budget.startup), (end, per), (begin, per)]):
        if core.advance(stop, most, resume=k > 0, also=(done,)) == done:
            return RunnerRun(_read_io(core, n, outputs_offset, stack_floor), None, None)
    call_site = core.uc.reg_read(arm_const.UC_ARM_REG_LR) & ~1
    counted = core.run(end, {begin: "begin"}, max_instructions=per, resume=True)
    core.advance(done, (n + 1) * per, resume=True)
    return RunnerRun(_read_io(core, n, outputs_offset, stack_floor), counted, call_site)


def invoke_windows(marks: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Mark indices of each sweep_invoke_begin and the sweep_invoke_end that follows it."""
    windows, begin = [], None
    for index, (name, _count) in enumerate(marks):
        if name == "begin":
            begin = index
        elif begin is not None:
            windows.append((begin, index))
            begin = None
    return windows


def invoke_counts(marks: list[tuple[str, int]]) -> list[int]:
    """Instructions between each sweep_invoke_begin and the following sweep_invoke_end."""
    return [marks[end][1] - marks[begin][1] for begin, end in invoke_windows(marks)]


def _stack_bytes(core: CortexM, start: int) -> int:
    """Deepest stack use seen: emulated RAM starts zeroed, the stack grows down from the top
    towards ``start`` (the end of what the firmware itself uses)."""
    free = np.frombuffer(core.read(start, RAM_BASE + RAM_BYTES - start), dtype=np.uint8)
    used = np.flatnonzero(free)
    return int(len(free) - used[0]) if len(used) else 0


def check(io: dict, cpu: str) -> None:
    if io["status"] != STATUS_OK:
        what = _STATUS.get(io["status"], f"status {io['status']}")
        tflm = f"; TFLM says: {io['log'].strip()}" if io["log"].strip() else ""
        raise FirmwareError(f"{cpu} firmware: {what}{tflm}")
