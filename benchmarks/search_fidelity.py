"""The board search as it was (every trial trains the whole schedule, host tflite-micro timing
as latency objective, one trial at a time) beside the multi-fidelity one
(``experiment=board_search`` as it is now: rungs, the board estimate, two trials side by
side), on the same data, target, seed and code, one after the other in one run.

For each it prints the wall time, the jobs run, the **time to the first feasible model of at
most 8,000 B** (feasible: runs and fits the board, at most ``search.max_accuracy_drop``
= 0.5 pp below the reference; the time from the sweep command's start to the end of that
trial's full-schedule run), the smallest feasible model at the end, and the final feasible
Pareto set (``optimization_results.yaml``). Each search runs in an outputs folder of its own
(its own MLflow store and model cache: neither reuses the other's training); the Cortex-M
library is shared (``SWEEP_FIRMWARE_CACHE``), as it is built once per machine anyway.

    SWEEP_DATA_DIR=../shared/data .venv/bin/python benchmarks/search_fidelity.py
    SWEEP_DATA_DIR=../shared/data .venv/bin/python benchmarks/search_fidelity.py \\
        --dataset fashion_mnist --no-emulate --order new-first
    SWEEP_DATA_DIR=../shared/data .venv/bin/python benchmarks/search_fidelity.py \\
        --only new --trials 12   # the first 12 of the 40 trials: the same proposals (seeded)

``--no-emulate`` (``target.emulate=false``) leaves out the Cortex-M build and emulation
(then both searches minimize the host tflite-micro timing): the search's own cost, while
board figures cost ~8 s a model. Nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
SMALL_ENOUGH = 8000  # bytes
TODAY = [
    "hydra.sweeper.rung_epochs=null",
    "search.latency_metric=mcu_latency_median_us",
    "hydra/launcher=basic",
    "hydra.sweeper.n_jobs=1",
]
"""The search before multi-fidelity: one rung, the host tflite-micro timing as latency, one
trial at a time."""
ARMS = {"one rung (before)": TODAY, "rungs (now)": []}
CPU: dict[str, float] = {}


def children_cpu() -> float:
    """CPU seconds (user + system) of the ended child processes and everything they waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(name: str, overrides: list[str], env: dict[str, str], out: Path) -> tuple[float, float]:
    """One search in its own outputs folder: (start time since the epoch, wall seconds); its
    CPU seconds go into :data:`CPU` (on a shared machine they move less than wall time)."""
    folder = out / name.split()[0].replace("-", "")
    sweep_dir = folder / "sweep"
    command = [sys.executable, "-m", "sweep", "--multirun", f"hydra.sweep.dir={sweep_dir}"]
    started, clock, cpu = time.time(), time.perf_counter(), children_cpu()
    result = subprocess.run(
        command + overrides,
        cwd=ROOT,
        env={**env, "SWEEP_OUTPUTS": str(folder)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - clock
    CPU[name] = children_cpu() - cpu
    (folder / "search.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.stderr.write(f"{name}: exit {result.returncode}, see {folder / 'search.log'}\n")
    return started, wall


def report(name: str, folder: Path, started: float, wall: float) -> list[str]:
    """Figures of one search, read back from its own store and results file."""
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep").experiment_id
    sweep_dir = (folder / "sweep").resolve()
    runs = client.search_runs([experiment], f"tags.`sweep.id` = '{sweep_dir}'", max_results=2000)
    jobs = [r for r in runs if r.data.tags.get("sweep.role") == "child"]
    full = [r for r in jobs if r.data.tags.get("search.fidelity") != "rung0"]
    feasible = [r for r in full if r.data.metrics.get("search.feasible") == 1]
    small = [r for r in feasible if r.data.metrics["tflite_bytes"] <= SMALL_ENOUGH]
    first = min(small, key=lambda r: r.info.end_time, default=None)
    first_text = "not reached"
    if first is not None:
        seconds = first.info.end_time / 1000 - started
        first_text = (
            f"{seconds / 60:.1f} min, {100 * seconds / wall:.0f} % of its wall "
            f"(trial {first.data.tags.get('search.trial')})"
        )
    results = OmegaConf.to_container(OmegaConf.load(folder / "sweep" / "optimization_results.yaml"))
    reference = results.get("reference_accuracy") or 0.0
    best = min(feasible, key=lambda r: r.data.metrics["tflite_bytes"], default=None)
    best_text = "—"
    if best is not None:
        m = best.data.metrics
        best_text = (
            f"{m['tflite_bytes']:,.0f} B at {100 * m['tflite_accuracy']:.2f}% "
            f"({100 * (m['tflite_accuracy'] - reference):+.2f} pp)"
        )
    print(f"\n{name}: final feasible Pareto set ({', '.join(results['objectives'])}):")
    for solution in results["solutions"]:
        values = ", ".join(f"{v:.6g}" for v in solution["values"])
        knobs = " ".join(f"{k}={v}" for k, v in solution["params"].items())
        print(f"  trial {solution['number']}: {values}  ← {knobs}")
    trials = results["trials"]
    return [
        name,
        f"{wall / 60:.1f} min ({CPU[name] / 60:.1f} CPU min)",
        f"{len(jobs)} ({len(jobs) - len(full)} at rung 0)",
        f"{trials['complete'] + trials.get('stopped_at_rung0', 0)} "
        f"({trials.get('stopped_at_rung0', 0)} stopped at rung 0)",
        first_text,
        best_text,
        f"{100 * reference:.2f}%",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--target", default="nano33_ble_sense")
    parser.add_argument("--no-emulate", action="store_true", help="target.emulate=false")
    parser.add_argument("--order", default="old-first", choices=["old-first", "new-first"])
    parser.add_argument("--trials", type=int, default=None, help="hydra.sweeper.n_trials")
    parser.add_argument("--only", choices=["old", "new"], help="run one of the two searches")
    parser.add_argument("overrides", nargs="*", help="more overrides for both searches")
    args = parser.parse_args()
    common = ["experiment=board_search", f"target={args.target}", f"dataset={args.dataset}"]
    common += ["seed=0", *(["target.emulate=false"] if args.no_emulate else [])]
    common += [*([f"hydra.sweeper.n_trials={args.trials}"] if args.trials else []), *args.overrides]
    env = dict(os.environ)
    env.setdefault("SWEEP_FIRMWARE_CACHE", str(ROOT / "outputs" / "cache" / "firmware"))
    env.setdefault("SWEEP_ALLOW_OUTSIDE_OUTPUTS", "1")  # one library, outside both searches
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{' '.join(common)}; data {env.get('SWEEP_DATA_DIR', 'default')}; load {load}")
    out = Path(tempfile.mkdtemp(prefix="search-fidelity-"))
    arms = list(ARMS.items())
    if args.order == "new-first":
        arms.reverse()
    if args.only:
        arms = [arm for arm in arms if ("before" in arm[0]) == (args.only == "old")]
    rows = [["search", "wall (CPU)", "jobs", "trials", "first feasible ≤ 8,000 B",
             "smallest feasible", "reference"]]  # fmt: skip
    for name, extra in arms:
        started, wall = run(name, [*common, *extra], env, out)
        rows.append(report(name, out / name.split()[0].replace("-", ""), started, wall))
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\nout: {out}; load at the end {load}")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
