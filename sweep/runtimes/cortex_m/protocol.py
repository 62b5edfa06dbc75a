"""The memory the host and the firmware share: how images go in and results come out.

One block at :data:`~sweep.runtimes.cortex_m.emulator.IO_BASE`: a header of
32-bit words (:data:`IO_FIELDS`, the order of ``struct SweepIo`` in
``firmware/main.cc``), TFLM's log, then the images and the outputs. Everything
the firmware learns (tensor sizes and types, the arena it really used, why it
failed) comes back through that header, so no semihosting or UART needs parsing.
"""

from __future__ import annotations

import struct

import numpy as np

from sweep.runtimes.cortex_m.emulator import (
    IO_BASE,
    RAM_BASE,
    RAM_BYTES,
    CortexM,
    Run,
    page_round,
)
from sweep.runtimes.cortex_m.firmware import Firmware, symbols

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


def execute(firmware: Firmware, cpu_model: int, inputs: np.ndarray) -> tuple[dict, Run, CortexM]:
    n, image_bytes = inputs.shape[0], inputs[0].nbytes
    header, inputs_offset, outputs_offset, io_bytes = _header(n, image_bytes)
    core = CortexM(firmware.elf, cpu_model, io_bytes)
    core.write(IO_BASE, header)
    core.write(IO_BASE + inputs_offset, np.ascontiguousarray(inputs).tobytes())
    table = symbols(firmware.elf)
    marks = {table["sweep_invoke_begin"]: "begin", table["sweep_invoke_end"]: "end"}
    run = core.run(table["sweep_done"], marks)
    words = struct.unpack(f"<{len(IO_FIELDS)}I", core.read(IO_BASE, _LOG_OFFSET))
    io = dict(zip(IO_FIELDS, words, strict=True))
    io["log"] = core.read(IO_BASE + _LOG_OFFSET, io["log_len"]).decode(errors="replace")
    if io["status"] == STATUS_OK:
        io["outputs"] = core.read(IO_BASE + outputs_offset, n * io["output_bytes"])
    io["stack_bytes"] = _stack_bytes(core, table)
    return io, run, core


def _stack_bytes(core: CortexM, table: dict[str, int]) -> int:
    """Deepest stack use seen: emulated RAM starts zeroed, the stack grows down from the top."""
    start = table.get("_end", RAM_BASE)
    free = np.frombuffer(core.read(start, RAM_BASE + RAM_BYTES - start), dtype=np.uint8)
    used = np.flatnonzero(free)
    return int(len(free) - used[0]) if len(used) else 0


def check(io: dict, cpu: str) -> None:
    if io["status"] != STATUS_OK:
        what = _STATUS.get(io["status"], f"status {io['status']}")
        tflm = f"; TFLM says: {io['log'].strip()}" if io["log"].strip() else ""
        raise FirmwareError(f"{cpu} firmware: {what}{tflm}")
