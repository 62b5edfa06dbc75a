"""Read what a ``.tflite`` file stores, straight from its flatbuffer.

Interpreters may pack or free constant tensors (XNNPACK does), so weights and
operators are read from the file itself, the way a microcontroller would see it.
"""

from __future__ import annotations

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


def operator_names(tflite: bytes) -> list[str]:
    """Sorted operator names the model needs (CONV_2D, ...; custom ones as CUSTOM:<name>)."""
    model = _model(tflite)
    names = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if op == schema.BuiltinOperator.CUSTOM:
            names.add(f"CUSTOM:{(code.CustomCode() or b'').decode()}")
        else:
            names.add(_OPERATOR_NAMES.get(op, f"BUILTIN_{op}"))
    return sorted(names)
