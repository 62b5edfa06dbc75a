"""Instructions per inference on emulated Cortex-M CPUs, TFLM + CMSIS-NN: are the counts sane?

Three models, each bundled as a sweep bundles it and run through the per-model build,
:func:`sweep.runtimes.cortex_m.emulate_per_model` (every invoke counted: the emulation
speed below is the counting hook's; a sweep uses the runner, whose counts are the same,
see ``board_cost.py``):

- the reference CNN (Reshape → Conv2D 12×3×3 ReLU → MaxPool 2×2 → Flatten →
  Dense 10 on 28×28×1), trained one epoch on the MNIST fixture in tests/data
  (the weights hardly matter for the count; training gives the int8 conversion
  realistic ranges), converted to full int8 and to float32;
- the two MLPerf Tiny int8 reference models in ``../shared/mlperf_tiny/``
  (keyword spotting DS-CNN, image-classification ResNet-8), fed random int8
  inputs (int8 kernels follow the same code path whatever the values).

For each: instructions per invoke (after a warm-up invoke), instructions per
MAC (MACs counted from the file's conv, depthwise-conv and fully-connected
layers), flash/RAM of the firmware, and the wall time of the emulation and of
the per-model firmware build. Nothing asserts a speed.

    .venv/bin/python benchmarks/cortex_m_instructions.py                 # cortex-m4f
    .venv/bin/python benchmarks/cortex_m_instructions.py --cpus cortex-m4f cortex-m7 cortex-m0plus
    .venv/bin/python benchmarks/cortex_m_instructions.py --reference-kernels   # + TFLM reference

CPUs whose library is not built yet are built first (minutes each, once).

Measured on this machine (2 cores shared with other jobs, so wall times are
upper bounds; the instruction counts are exact and repeat to the instruction),
``--cpus cortex-m4f cortex-m7 --reference-kernels --images 2``:

| model | cpu | kernels | MACs | instructions | instr/MAC |
| --- | --- | --- | ---: | ---: | ---: |
| reference CNN int8 | cortex-m4f | CMSIS-NN | 93,288 | 984,829 | 10.56 |
| reference CNN int8 | cortex-m7 | CMSIS-NN | 93,288 | 1,016,815 | 10.90 |
| reference CNN int8 | cortex-m4f | reference | 93,288 | 4,607,437 | 49.39 |
| reference CNN float32 | cortex-m4f | CMSIS-NN | 93,288 | 3,887,452 | 41.67 |
| reference CNN float32 | cortex-m7 | CMSIS-NN | 93,288 | 3,366,417 | 36.09 |
| reference CNN float32 | cortex-m4f | reference | 93,288 | 3,582,671 | 38.40 |
| MLPerf KWS DS-CNN int8 | cortex-m4f | CMSIS-NN | 2,656,768 | 7,698,264 | 2.90 |
| MLPerf KWS DS-CNN int8 | cortex-m7 | CMSIS-NN | 2,656,768 | 7,644,040 | 2.88 |
| MLPerf KWS DS-CNN int8 | cortex-m4f | reference | 2,656,768 | 43,041,554 | 16.20 |
| MLPerf IC ResNet-8 int8 | cortex-m4f | CMSIS-NN | 12,501,632 | 29,863,649 | 2.39 |
| MLPerf IC ResNet-8 int8 | cortex-m7 | CMSIS-NN | 12,501,632 | 30,026,494 | 2.40 |
| MLPerf IC ResNet-8 int8 | cortex-m4f | reference | 12,501,632 | 107,403,496 | 8.59 |

``--cpus cortex-m0plus --images 1`` (ARMv6-M: no DSP, no FPU, so CMSIS-NN's plain C
paths and soft float):

| model | cpu | kernels | MACs | instructions | instr/MAC |
| --- | --- | --- | ---: | ---: | ---: |
| reference CNN int8 | cortex-m0plus | CMSIS-NN | 93,288 | 2,137,408 | 22.91 |
| reference CNN float32 | cortex-m0plus | CMSIS-NN | 93,288 | 18,993,423 | 203.60 |
| MLPerf KWS DS-CNN int8 | cortex-m0plus | CMSIS-NN | 2,656,768 | 28,997,198 | 10.91 |
| MLPerf IC ResNet-8 int8 | cortex-m0plus | CMSIS-NN | 12,501,632 | 97,555,818 | 7.80 |

Emulation runs at ~7-23 M instructions/s: ResNet-8 takes 1.3-2.8 s per invoke
(11 s for its four invokes on cortex-m4f), the CNN well under a second; building
one model's firmware takes 3-10 s (more when the machine is busy).

What it says: on the MLPerf models CMSIS-NN needs 2.4-2.9 instructions per MAC,
3.6-5.6x fewer than TFLM's reference kernels (published TFLM/microTVM + CMSIS-NN
boards spend 3.7-4.5 cycles per MAC on a Cortex-M4F: cycles exceed instructions).
The study's CNN is a poor fit for CMSIS-NN (10.6 instr/MAC): its only conv has
one input channel, so im2col copies single bytes through memcpy and the s8/s16
matrix kernel runs 9-long dot products (52 % of the instructions there, 11 %
memcpy, 9 % max-pool, found by attributing every block to its ELF symbol).
Float32 is not a CMSIS-NN path at all (its float kernels are TFLM's reference
code), hence 4x the int8 count; the Cortex-M7 build needs 13 % fewer
instructions there than the M4F one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

ROOT = Path(__file__).resolve().parents[1]
MLPERF = Path(os.environ.get("SWEEP_MLPERF_TINY", ROOT.parent / "shared" / "mlperf_tiny"))


def count_macs(tflite: bytes) -> int:
    """Multiply-accumulates of the conv, depthwise-conv and fully-connected layers."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(tflite, 0)
    ops = schema.BuiltinOperator
    total = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)

        def shape(index: int, graph=graph) -> list[int]:
            return [int(d) for d in graph.Tensors(index).ShapeAsNumpy()]

        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED):
                # output positions × weights: conv (out_c, kh, kw, in_c), depthwise
                # (1, kh, kw, out_c), fully connected (out, in) with batch positions
                positions = int(np.prod(shape(op.Outputs(0))[:-1]))
                total += positions * int(np.prod(shape(op.Inputs(1))))
    return total


def reference_cnn() -> dict[str, tuple[bytes, np.ndarray]]:
    """The study's CNN, int8 and float32, with 8 real test images each."""
    from sweep.backend import keras
    from sweep.groups.dataset import ImageDataset
    from sweep.groups.model import ConvNet
    from sweep.groups.quantize import Float32, FullInteger

    data = ImageDataset(name="mnist", path=str(ROOT / "tests" / "data" / "mnist")).load()
    keras.utils.set_random_seed(0)
    model = ConvNet().build(data.input_shape, data.num_classes)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(data.x_train, data.y_train, epochs=1, verbose=0)
    images = data.x_test[:8]
    return {
        "reference CNN int8": (
            FullInteger(calibration_samples=200).convert(model, data.x_train),
            images,
        ),
        "reference CNN float32": (Float32().convert(model, data.x_train), images),
    }


def model_inputs(model: bytes, images: np.ndarray | None, n: int) -> np.ndarray:
    """Input 0 in the model's dtype: quantized images, or seeded random values."""
    from tflite_micro.python.tflite_micro import runtime

    from sweep.runtimes.tensors import to_model_input

    details = runtime.Interpreter.from_bytes(model, arena_size=64 << 20).get_input_details(0)
    shape, dtype = tuple(details["shape"][1:]), np.dtype(details["dtype"])
    if images is None:
        rng = np.random.default_rng(0)
        if dtype.kind == "f":
            return rng.random((n, *shape), dtype=np.float32)
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, (n, *shape)).astype(dtype)
    q = details["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero_point = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    return to_model_input(images[:n], shape, dtype, scale, zero_point)


def arena(model: bytes) -> int:
    from sweep.runtimes import tflm

    return tflm.minimal_arena(model, tflm.MAX_ARENA_BYTES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", nargs="+", default=["cortex-m4f"])
    parser.add_argument("--images", type=int, default=2, help="images per model (>= 1)")
    parser.add_argument(
        "--reference-kernels",
        action="store_true",
        help="also run TFLM's reference kernels on the first CPU (one more library build)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sweep.runtimes.cortex_m.run").setLevel(logging.WARNING)

    from sweep.runtimes.bundle import write_bundle
    from sweep.runtimes.cortex_m import emulate_per_model

    models = dict(reference_cnn())
    for name, file in (
        ("MLPerf KWS DS-CNN int8", "kws_ref_model.tflite"),
        ("MLPerf IC ResNet-8 int8", "ic_resnet8_int8.tflite"),
    ):
        path = MLPERF / file
        if path.exists():
            models[name] = (path.read_bytes(), None)
        else:
            print(f"skipped {name}: {path} not found (set SWEEP_MLPERF_TINY)", file=sys.stderr)

    runs = [(cpu, "cmsis_nn") for cpu in args.cpus]
    if args.reference_kernels:
        runs.append((args.cpus[0], None))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-cortex-m-bench-") as tmp:
        for name, (model, images) in models.items():
            bundle = Path(tmp) / name.replace(" ", "_")
            write_bundle(model, bundle, arena_bytes=arena(model))
            inputs = model_inputs(model, images, args.images)
            macs = count_macs(model)
            for cpu, kernels in runs:
                r = emulate_per_model(bundle, cpu, inputs, kernels=kernels)
                invokes = len(inputs) + 2
                rows.append(
                    (
                        name,
                        cpu,
                        "CMSIS-NN" if kernels else "reference",
                        f"{macs:,}",
                        f"{r.instructions:,}",
                        f"{r.instructions / macs:.2f}",
                        f"{r.firmware_flash_bytes / 1024:.1f}",
                        f"{r.firmware_ram_bytes / 1024:.1f}",
                        f"{r.build_seconds:.1f}",
                        f"{r.run_seconds:.1f}",
                        f"{r.run_seconds / invokes:.2f}",
                        f"{r.instructions * invokes / r.run_seconds / 1e6:.1f}",
                    )
                )
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    header = (
        "model",
        "cpu",
        "kernels",
        "MACs",
        "instructions",
        "instr/MAC",
        "flash KB",
        "RAM KB",
        "build s",
        "emulation s",
        "s/invoke",
        "M instr/s",
    )
    print(
        f"\n{args.images} image(s) per model: {args.images + 2} invokes each "
        "(warm-up, counted, one per image)\n"
    )
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" if i < 3 else "---:" for i in range(len(header))) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
