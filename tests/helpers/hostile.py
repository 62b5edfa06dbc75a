"""Hostile inputs the tests make themselves: crafted .tflite files, planted files, processes
left behind. Nothing here uses the code under test to build what attacks it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from helpers.config import DATA

SEGFAULT_MODEL = DATA / "tflm_segfault.tflite"
"""A real int8 model (input int8 1×28×28) to edit: its flatbuffer is small and valid."""


def while_forever_tflite(shape: tuple[int, ...] = (1, 4)) -> bytes:
    """A real TFLite model (TF's own converter) whose WHILE condition is always true."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec(list(shape), tf.float32)])
    def forever(x):
        def cond(i, y):
            return tf.greater_equal(i, 0)  # i never changes: always true

        def body(i, y):
            return i * 1, y + 1.0

        return tf.while_loop(cond, body, [tf.constant(0), x])[1]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [forever.get_concrete_function()], forever
    )
    return converter.convert()


def edit_tflite(data: bytes, change: Callable[[schema.ModelT], None]) -> bytes:
    """The model ``data`` with ``change`` applied to its flatbuffer object tree, re-packed."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    change(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def with_input_shape(shape: list[int]) -> bytes:
    """The segfault model with input 0 declared as ``shape`` (nothing else changed)."""

    def change(model: schema.ModelT) -> None:
        graph = model.subgraphs[0]
        graph.tensors[graph.inputs[0]].shape = np.array(shape, dtype=np.int32)

    return edit_tflite(SEGFAULT_MODEL.read_bytes(), change)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(condition: Callable[[], bool], budget: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` when ``budget`` runs out."""
    deadline = time.monotonic() + budget
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {budget:g} s"
        time.sleep(0.1)


def fifo(path: Path) -> Path:
    """A named pipe at ``path``: reading it blocks until someone writes."""
    os.mkfifo(path)
    return path
