"""How well does a latency figure hold still? Re-measure one .tflite in fresh processes.

    python benchmarks/latency_stability.py [MODEL.tflite ...] [--processes 5]
        [--settings windows=20,window_ms=50,warmup_ms=500 --settings windows=10,window_ms=20]

Without a model, the reference CNN is trained briefly on the test fixtures and
converted to int8 and float32. Each process measures one model with one set of
``measure`` settings (the job's defaults from conf/config.yaml, with each
``--settings`` applied on top) and prints one line; processes of the different
settings alternate, so machine noise hits them alike. The summary gives, per
model and settings, each process's median, the deviation of the worst one from
their median, and the seconds one measurement costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURE = """
import json, sys, time
import numpy as np
from omegaconf import OmegaConf
from sweep.run_settings import MeasureSettings
from sweep.runtimes.litert import latency, make_interpreter
settings = MeasureSettings(**{**OmegaConf.load(sys.argv[2]).measure, **json.loads(sys.argv[3])})
tflite = open(sys.argv[1], "rb").read()
shape = make_interpreter(tflite).get_input_details()[0]["shape"][1:]
image = np.random.default_rng(0).random(shape, dtype=np.float32)
started = time.perf_counter()
figures = latency(tflite, image, settings)
print(json.dumps({**figures, "seconds": time.perf_counter() - started}))
"""


def reference_models(folder: Path) -> list[Path]:
    """The reference CNN (2 epochs on the MNIST fixture) as float32 and int8 .tflite."""
    from sweep.groups.dataset import ImageDataset
    from sweep.groups.model import ConvNet
    from sweep.groups.quantize import Float32, FullInteger
    from sweep.groups.train import FitTrainer

    data = ImageDataset(name="mnist", path=str(ROOT / "tests" / "data" / "mnist")).load()
    model = ConvNet().build(data.input_shape, data.num_classes)
    FitTrainer(epochs=2).fit(model, data.x_train, data.y_train)
    paths = []
    for name, quantizer in (("float32", Float32()), ("int8", FullInteger())):
        path = folder / f"reference_{name}.tflite"
        path.write_bytes(quantizer.convert(model, data.x_train))
        paths.append(path)
    return paths


def parse_settings(text: str) -> dict[str, float]:
    """``windows=10,window_ms=20`` -> {"windows": 10, "window_ms": 20.0}."""
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {key: (int(value) if key == "windows" else float(value)) for key, value in pairs}


def measure_once(model: Path, overrides: dict[str, float]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model), str(ROOT / "conf" / "config.yaml"),
         json.dumps(overrides)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--settings", action="append", default=None, metavar="K=V,...",
                        help="measure settings to compare (default: the job's own)")  # fmt: skip
    args = parser.parse_args()
    variants = args.settings or [""]
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or reference_models(Path(tmp))
        print(f"{'model':<26} {'settings':<38} {'process medians (µs)':<44} "
              f"{'overall':>8} {'max dev':>8} {'s/measure':>9}")  # fmt: skip
        for model in models:
            runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for _ in range(args.processes):  # alternate, so noise hits every variant alike
                for variant in variants:
                    runs[variant].append(measure_once(model, parse_settings(variant)))
            for variant in variants:
                medians = [r["latency_median_us"] for r in runs[variant]]
                overall = statistics.median(medians)
                deviation = max(abs(m - overall) / overall for m in medians)
                cost = statistics.median(r["seconds"] for r in runs[variant])
                shown = " ".join(f"{m:.2f}" for m in medians)
                name = f"{model.parent.name}/{model.name}"[-26:]
                print(f"{name:<26} {variant or 'defaults':<38} {shown:<44} {overall:>8.2f} "
                      f"{100 * deviation:>7.1f}% {cost:>9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
