"""What TensorFlow's spinning thread pools cost when two TensorFlow processes share the cores.

``sweep.backend`` starts TensorFlow with ``experimental.disable_thread_spinning``: its
pools sleep when idle instead of spinning for work. Measured side by side in one run,
alternating, each arm a fresh process training the reference CNN with the project's
trainer (seed 0, TensorFlow's default thread count):

- **alone**: one training, nothing else running;
- **side by side**: two trainings at once (parallel jobs, the tests' workers, Ray);

each with the pools spinning (TensorFlow's default, re-enabled in the child before its
runtime starts) and sleeping (the tool's default). Prints each training's wall and CPU
seconds (the fit only, not the import) and the trained weights' hash, which must be the
same in every arm.

    .venv/bin/python benchmarks/thread_spinning.py                          # tests/data (~1 min)
    .venv/bin/python benchmarks/thread_spinning.py --data ../shared/data --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import hashlib, json, sys, time
from sweep.backend import keras, loaded
loaded("keras")  # TensorFlow imported as a job imports it: pools set to sleep
spinning, data_dir, epochs = sys.argv[1] == "spinning", sys.argv[2], int(sys.argv[3])
if spinning:  # TensorFlow's own default, before its runtime starts
    from tensorflow.python.eager import context
    context.context()._config.experimental.disable_thread_spinning = False
from sweep.groups.dataset import ImageDataset
from sweep.groups.model import ConvNet
from sweep.groups.train import FitTrainer
data = ImageDataset(name="mnist", path=data_dir + "/mnist").load()
keras.utils.set_random_seed(0)
model = ConvNet().build(data.input_shape, data.num_classes)
wall, cpu = time.perf_counter(), time.process_time()
FitTrainer(epochs=epochs).fit(model, data.x_train, data.y_train)
weights = b"".join(w.tobytes() for w in model.get_weights())
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "weights": hashlib.sha256(weights).hexdigest()[:16]}))
"""
MODES = ("spinning", "sleeping")


def _trainings(mode: str, count: int, data: str, epochs: int) -> list[dict]:
    """``count`` trainings started at once; each one's figures."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, data, str(epochs)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(count)
    ]
    figures = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            sys.exit(f"a {mode} training failed (exit {child.returncode})")
        figures.append(json.loads(out.strip().splitlines()[-1]))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "tests" / "data"), help="holds mnist/")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each arm, alternating")
    options = parser.parse_args()
    arms = [(mode, count) for count in (1, 2) for mode in MODES]
    runs: dict[tuple[str, int], list[dict]] = {arm: [] for arm in arms}
    for round_ in range(1, options.rounds + 1):
        for mode, count in arms:
            figures = _trainings(mode, count, options.data, options.epochs)
            runs[mode, count] += figures
            shown = ", ".join(f"{f['wall']:.2f} s ({f['cpu']:.2f} CPU s)" for f in figures)
            print(f"round {round_} {mode:>8} × {count}: {shown}", flush=True)
    setting = f"{options.rounds} rounds, {options.epochs} epochs, {options.data}"
    print(f"\nmedian per training ({setting}):")
    print("| pools | alone: wall (CPU) | side by side: wall (CPU) |")
    print("| --- | --- | --- |")
    for mode in MODES:
        cells = []
        for count in (1, 2):
            wall = statistics.median(f["wall"] for f in runs[mode, count])
            cpu = statistics.median(f["cpu"] for f in runs[mode, count])
            cells.append(f"{wall:.2f} s ({cpu:.2f} CPU s)")
        print(f"| {mode} | {' | '.join(cells)} |")
    hashes = {f["weights"] for figures in runs.values() for f in figures}
    print(f"\ntrained weights identical in every arm: {'yes' if len(hashes) == 1 else 'NO'}"
          f" ({', '.join(sorted(hashes))})")  # fmt: skip


if __name__ == "__main__":
    main()
