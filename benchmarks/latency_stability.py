"""How well does a latency figure hold still? Re-measure one .tflite in fresh processes.

    python benchmarks/latency_stability.py [MODEL.tflite] [--processes 5]

Without a model, the reference CNN is trained briefly on the test fixtures and
converted to int8 and float32. Each process measures with the job's own
settings (``measure.*`` defaults in conf/config.yaml) and prints one line; the
summary gives each process's median and its deviation from the median of all.
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
import json, sys
import numpy as np
from omegaconf import OmegaConf
from sweep.run_settings import MeasureSettings
from sweep.runtimes.litert import latency
settings = MeasureSettings(**OmegaConf.load(sys.argv[2]).measure)
image = np.random.default_rng(0).random((28, 28), dtype=np.float32)
print(json.dumps(latency(open(sys.argv[1], "rb").read(), image, settings)))
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


def measure_in_fresh_processes(model: Path, processes: int) -> list[dict[str, float]]:
    config = ROOT / "conf" / "config.yaml"
    results = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, str(model), str(config)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--processes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or reference_models(Path(tmp))
        print(f"{'model':<28} {'process medians (µs)':<44} {'overall':>8} {'max dev':>8}")
        for model in models:
            runs = measure_in_fresh_processes(model, args.processes)
            medians = [r["latency_median_us"] for r in runs]
            overall = statistics.median(medians)
            deviation = max(abs(m - overall) / overall for m in medians)
            shown = " ".join(f"{m:.2f}" for m in medians)
            name = f"{model.parent.name}/{model.name}"
            print(f"{name:<28} {shown:<44} {overall:>8.2f} {100 * deviation:>7.1f}%")


if __name__ == "__main__":
    main()
