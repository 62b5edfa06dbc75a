"""How many instructions a model may run in the emulator before it is stopped.

A model file is untrusted input, and TFLM runs control flow (``WHILE``) as the
file says: a loop whose condition never turns false would hold a sweep forever.
So every emulation runs under an instruction budget worked out from the file
alone, before anything runs:

    work        = sum over every operator of every subgraph of
                  (multiply-accumulates + elements of all its input and output tensors)
    per invoke  = 1,000,000 + 1,000 x work
    start-up    = 5,000,000 + 100 x the file's bytes   (parsing, AllocateTensors)
    budget      = start-up + (images + 2) x per invoke (warm-up, counted, one per image)

A thousand instructions per unit of work is far above what any kernel here
needs: the worst measured, float32 on the FPU-less Cortex-M0+ (soft float), is
~200 instructions per MAC, and CMSIS-NN int8 is 2-11. A loop body counts once,
so a model that loops more than about a thousand times over its own size runs
out of budget: that is the point. A run that does is reported as the model's
verdict ("did not finish within N instructions"), not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

PER_INVOKE_BASE = 1_000_000
PER_UNIT = 1_000
STARTUP_BASE = 5_000_000
STARTUP_PER_BYTE = 100
_MAC_OPS = {
    schema.BuiltinOperator.CONV_2D,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D,
    schema.BuiltinOperator.FULLY_CONNECTED,
    schema.BuiltinOperator.TRANSPOSE_CONV,
    schema.BuiltinOperator.BATCH_MATMUL,
}


@dataclass(frozen=True)
class Budget:
    """``work``: the model's size in MACs and tensor elements; the rest in instructions."""

    work: int
    per_invoke: int
    startup: int
    images: int

    @property
    def total(self) -> int:
        return self.startup + (self.images + 2) * self.per_invoke

    def describe(self) -> str:
        return (
            f"{self.total:,} instructions (the budget for {self.images} image(s): "
            f"{self.per_invoke:,} per invoke, from the model's {self.work:,} MACs and "
            "tensor elements)"
        )


def _elements(shape: np.ndarray | int) -> int:
    dims = [max(1, int(d)) for d in np.atleast_1d(shape)]
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


def model_work(tflite: bytes) -> int:
    """Multiply-accumulates plus tensor elements touched, over every operator once."""
    model = schema.Model.GetRootAs(tflite, 0)
    total = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = graph.TensorsLength()

        def size(index: int, graph=graph, tensors=tensors) -> int:
            if not 0 <= index < tensors:
                return 0
            tensor = graph.Tensors(index)
            return _elements(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else 1

        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            total += sum(size(i) for i in inputs + outputs)
            code_index = op.OpcodeIndex()
            if 0 <= code_index < model.OperatorCodesLength() and len(inputs) > 1 and outputs:
                code = model.OperatorCodes(code_index)
                if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) in _MAC_OPS:
                    out = graph.Tensors(outputs[0]) if 0 <= outputs[0] < tensors else None
                    positions = (
                        _elements(out.ShapeAsNumpy()[:-1]) if out and out.ShapeLength() else 1
                    )
                    total += positions * size(inputs[1])
    return total


def instruction_budget(tflite: bytes, images: int) -> Budget:
    """The budget of one emulation of ``tflite`` on ``images`` images."""
    work = model_work(tflite)
    return Budget(
        work=work,
        per_invoke=PER_INVOKE_BASE + PER_UNIT * work,
        startup=STARTUP_BASE + STARTUP_PER_BYTE * len(tflite),
        images=images,
    )
