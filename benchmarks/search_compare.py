"""Hydra's Optuna sweeper (Optuna 2.10) beside this project's search (Optuna 5, ask/tell),
on the same space, budget, seed and data: wall time, the gap between trials (the sweeper's
own cost), and what each found under experiment=board_search's constraints.

Hydra's sweeper requires optuna < 3, so it runs from a folder that shadows the venv's
Optuna 5 on PYTHONPATH (the venv itself stays clean under `pip check`)::

    .venv/bin/pip install --target /tmp/optuna2 --no-deps optuna==2.10.1 hydra-optuna-sweeper==1.3.0
    .venv/bin/python benchmarks/search_compare.py --optuna2 /tmp/optuna2 --trials 10

Hydra's sweeper has no constraints and no reference trial: its trials are judged afterwards
against the reference accuracy the project's search measured (same data, seed and code).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SPACE = {
    "model.filters": "int(interval(4, 16))",
    "model.kernel_size": "choice(3, 5)",
    "model.pool_size": "choice(2, 3, 4)",
    "model.separable": "choice(false, true)",
    "model.blocks": "choice(1, 2)",
    "pretrain": "choice(none, qat)",
    "quantize.calibration_samples": "int(interval(100, 1000))",
}
HYDRA_OPTUNA_EXPERIMENT = """# @package _global_
defaults:
  - override /model: cnn
  - override /pretrain: none
  - override /quantize: int8
  - override /hydra/sweeper: optuna
objective: [tflite_bytes, mcu_latency_median_us, tflite_accuracy]
hydra:
  sweeper:
    direction: [minimize, minimize, maximize]
    study_name: hydra_optuna
    n_trials: {trials}
    n_jobs: 1
    max_failure_rate: 1.0
    sampler:
      seed: 0
    params:
{params}
"""


def run(name: str, overrides: list[str], env: dict[str, str], out: Path) -> float:
    """One sweep in its own outputs folder: its own MLflow store and model cache, so neither
    sweeper reuses the other's trained models."""
    env = {**env, "SWEEP_OUTPUTS": str(out / name)}
    sweep_dir = out / name / "sweep"
    command = [sys.executable, "-m", "sweep", "--multirun", f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    result = subprocess.run(
        command + overrides, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    (out / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.stderr.write(f"{name}: exit {result.returncode}, see {out / name}.log\n")
    return wall


def children(out: Path, name: str) -> list:
    client = MlflowClient(f"sqlite:///{out / name / 'mlflow.db'}")
    sweep_dir = out / name / "sweep"
    experiment = client.get_experiment_by_name("sweep").experiment_id
    runs = client.search_runs(
        [experiment], f"tags.`sweep.id` = '{sweep_dir.resolve()}'", max_results=1000
    )
    kids = [r for r in runs if r.data.tags.get("sweep.role") == "child"]
    return sorted(kids, key=lambda r: r.info.start_time)


def summary(name: str, wall: float, runs: list, reference: float, drop: float) -> list[str]:
    gaps = [(b.info.start_time - a.info.end_time) / 1000 for a, b in itertools.pairwise(runs)]
    feasible = [
        r for r in runs
        if r.data.metrics.get("fits_target") == 1
        and 100 * (reference - r.data.metrics["tflite_accuracy"]) <= drop
    ]  # fmt: skip
    best = min(feasible, key=lambda r: r.data.metrics["tflite_bytes"], default=None)
    best_text = "—"
    if best is not None:
        m = best.data.metrics
        best_text = f"{m['tflite_bytes']:.0f} B at {100 * m['tflite_accuracy']:.2f}%"
    return [
        name,
        f"{len(runs)}",
        f"{wall:.0f} s",
        f"{statistics.median(gaps):.2f} s" if gaps else "—",
        f"{len(feasible)}",
        best_text,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optuna2", required=True, help="folder holding optuna 2.10 + sweeper")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--data", default=str(ROOT / "tests" / "data"))
    parser.add_argument("--target", default="nano33_ble_sense")
    parser.add_argument(
        "--quick",
        nargs="*",
        default=[
            "train.epochs=2",
            "measure.windows=3",
            "measure.window_ms=5",
            "measure.warmup_ms=20",
        ],
    )
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="search-compare-"))
    conf = out / "conf" / "experiment"
    conf.mkdir(parents=True)
    params = "\n".join(f"      {k}: {v}" for k, v in SPACE.items())
    (conf / "hydra_optuna_board.yaml").write_text(
        HYDRA_OPTUNA_EXPERIMENT.format(trials=args.trials, params=params)
    )
    env = {**os.environ, "SWEEP_DATA_DIR": args.data}
    # The Cortex-M firmware (built once, ~4 min) is shared with the project's outputs, as in tests.
    env.setdefault("SWEEP_FIRMWARE_CACHE", str(ROOT / "outputs" / "cache" / "firmware"))
    common = [f"target={args.target}", "seed=0", *args.quick]

    ours = run(
        "search_optuna5",
        ["experiment=board_search", f"hydra.sweeper.n_trials={args.trials}", *common],
        env,
        out,
    )
    old_env = {**env, "PYTHONPATH": os.pathsep.join([args.optuna2, env.get("PYTHONPATH", "")])}
    hydras = run(
        "hydra_optuna2",
        [f"hydra.searchpath=[file://{out / 'conf'}]", "experiment=hydra_optuna_board", *common],
        old_env,
        out,
    )

    our_runs = children(out, "search_optuna5")
    their_runs = children(out, "hydra_optuna2")
    reference = next(r for r in our_runs if r.data.tags.get("search.role") == "reference")
    accuracy = reference.data.metrics["tflite_accuracy"]
    rows = [
        ["sweeper", "jobs", "wall", "median gap between jobs", "feasible", "smallest feasible"],
        summary("hydra-optuna-sweeper 1.3 + optuna 2.10", hydras, their_runs, accuracy, 0.5),
        summary("hydra/sweeper=search + optuna 5.0", ours, our_runs, accuracy, 0.5),
    ]
    print(f"reference int8 accuracy {100 * accuracy:.2f}%, {args.trials} trials, out: {out}")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
