"""Read what a ``.tflite`` file stores, straight from its flatbuffer.

Interpreters may pack or free constant tensors (XNNPACK does), so weights and
operators are read from the file itself, the way a microcontroller would see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

# TFLite TensorType codes of the weight formats our quantizers produce.
_WEIGHT_DTYPES: dict[int, np.dtype] = {
    schema.TensorType.FLOAT32: np.dtype("<f4"),
    schema.TensorType.FLOAT16: np.dtype("<f2"),
    schema.TensorType.INT8: np.dtype("i1"),
    schema.TensorType.UINT8: np.dtype("u1"),
}
_OPERATOR_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _model(tflite: bytes) -> schema.Model:
    return schema.Model.GetRootAs(tflite, 0)


def _buffer_bytes(model: schema.Model, tflite: bytes, index: int) -> bytes:
    buffer = model.Buffers(index)
    if buffer.Offset() > 1:  # files over 2 GB keep buffers after the flatbuffer
        return tflite[buffer.Offset() : buffer.Offset() + buffer.Size()]
    if buffer.DataLength() == 0:
        return b""
    return buffer.DataAsNumpy().tobytes()


def weight_arrays(tflite: bytes) -> list[np.ndarray]:
    """The constant kernels (rank >= 2) of every subgraph: what pruning sparsifies."""
    model = _model(tflite)
    arrays = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            dtype = _WEIGHT_DTYPES.get(tensor.Type())
            if dtype is None or tensor.ShapeLength() < 2:
                continue
            data = _buffer_bytes(model, tflite, tensor.Buffer())
            if data:
                arrays.append(np.frombuffer(data, dtype=dtype))
    return arrays


@dataclass(frozen=True)
class OperatorCode:
    """One entry of the model's operator-code table, as the file states it.

    ``name``: the schema's name (``CONV_2D``), ``BUILTIN_<code>`` for a code this
    schema does not know, or ``CUSTOM:<name>`` with the custom name escaped by
    :func:`printable_name` (a model file is untrusted input: its names may hold any
    bytes). ``used``: some operator of some subgraph refers to this entry; TFLM
    resolves only those, so an unused entry never needs a kernel.
    """

    builtin: int
    name: str
    known: bool
    custom: bool
    used: bool


_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
MAX_NAME_BYTES = 64
"""Longer custom names are cut (and say how long they were): they are only ever shown."""


def printable_name(raw: bytes) -> str:
    """``raw`` as plain ASCII that is inert anywhere it is written: letters, digits and
    ``_.-`` as they are, every other byte as ``\\xNN``.

    No newline, quote, ``*/``, ``??`` or line-ending backslash can survive, so the
    result may stand in a C/C++ comment or a text file without becoming code.
    """
    shown = raw[:MAX_NAME_BYTES]
    text = "".join(chr(b) if b in _NAME_CHARS else f"\\x{b:02x}" for b in shown)
    if len(raw) > MAX_NAME_BYTES:
        text += f"...({len(raw)} bytes)"
    return text


def operator_codes(tflite: bytes) -> list[OperatorCode]:
    """The operator-code table with, for each entry, whether any operator uses it."""
    model = _model(tflite)
    used: set[int] = set()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for k in range(graph.OperatorsLength()):
            used.add(graph.Operators(k).OpcodeIndex())
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if op == schema.BuiltinOperator.CUSTOM:
            name = f"CUSTOM:{printable_name(code.CustomCode() or b'')}"
            codes.append(OperatorCode(op, name, known=True, custom=True, used=i in used))
        else:
            known = op in _OPERATOR_NAMES
            name = _OPERATOR_NAMES[op] if known else f"BUILTIN_{op}"
            codes.append(OperatorCode(op, name, known=known, custom=False, used=i in used))
    return codes


def operator_names(tflite: bytes) -> list[str]:
    """Sorted operator names the model needs (CONV_2D, ...; custom ones as CUSTOM:<name>,
    escaped by :func:`printable_name`; codes this schema does not know as BUILTIN_<code>)."""
    return sorted({code.name for code in operator_codes(tflite)})
