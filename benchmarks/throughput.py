"""Sweep throughput on this machine: what the stage cache and parallel jobs buy.

Runs one fixed grid several ways, each exactly as a user would
(``python -m sweep --multirun`` in a subprocess) into a throw-away outputs
folder, and prints wall time and sequences per minute side by side, with the
ratios that matter. The numbers only inform: nothing here asserts a speed.

    .venv/bin/python benchmarks/throughput.py                       # tests/data subsets, ~2 min
    SWEEP_DATA_DIR=../shared/data .venv/bin/python benchmarks/throughput.py --train-limit 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ("pretrain=none,pruning", "quantize=none,dynamic_range,float16,int8")
PARALLEL = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1")


@dataclass(frozen=True)
class Scenario:
    name: str
    outputs: str  # scenarios naming the same folder share its cache, in this order
    overrides: tuple[str, ...] = ()


SCENARIOS = (
    Scenario("cold: sequential, empty cache", "sequential"),
    Scenario("warm: sequential, cache filled", "sequential"),
    Scenario("cache off: sequential", "sequential", ("cache.enabled=false",)),
    Scenario("cold: joblib n_jobs=2, empty cache", "parallel", PARALLEL),
    Scenario("warm: joblib n_jobs=2, cache filled", "parallel", PARALLEL),
)
RATIOS = (  # (what, slower scenario, faster scenario)
    ("warm vs cold (sequential)", 0, 1),
    ("cache on vs off (one cold sweep)", 2, 0),
    ("joblib n_jobs=2 vs sequential, cold", 0, 3),
    ("joblib n_jobs=2 vs sequential, warm", 1, 4),
)


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    seconds: float
    sequences: int

    @property
    def per_minute(self) -> float:
        return 60 * self.sequences / self.seconds


def run(scenario: Scenario, index: int, work: Path, data_dir: str, settings: list[str]) -> Result:
    """One sweep, timed from start to exit (TensorFlow's import included: users wait for it)."""
    outputs = work / scenario.outputs
    sweep_dir = outputs / "multirun" / f"{index}"
    command = [
        *(sys.executable, "-m", "sweep", "--multirun", f"hydra.sweep.dir={sweep_dir}"),
        *settings,
        *GRID,
        *scenario.overrides,
    ]
    env = {**os.environ, "SWEEP_OUTPUTS": str(outputs), "SWEEP_DATA_DIR": data_dir}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{scenario.name} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr}")
    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    return Result(scenario, seconds, ranking["runs"])


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | sequences | wall time | sequences/min |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {r.scenario.name} | {r.sequences} | {r.seconds:.1f} s | {r.per_minute:.1f} |"
            for r in results
        ),
        "",
        "| comparison | speed-up |",
        "| --- | ---: |",
        *(
            f"| {what} | {results[slow].seconds / results[fast].seconds:.2f}× |"
            for what, slow, fast in RATIOS
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="train.epochs of every job")
    parser.add_argument("--train-limit", type=int, help="dataset.train_limit (default: all)")
    parser.add_argument("--test-limit", type=int, help="dataset.test_limit (default: all)")
    args = parser.parse_args()
    data_dir = os.environ.get("SWEEP_DATA_DIR") or str(ROOT / "tests" / "data")
    settings = [
        "dataset=mnist",
        f"train.epochs={args.epochs}",
        *([f"dataset.train_limit={args.train_limit}"] if args.train_limit else []),
        *([f"dataset.test_limit={args.test_limit}"] if args.test_limit else []),
    ]
    print(f"grid: {' '.join(GRID)}; {' '.join(settings)}")
    print(f"data: {data_dir}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as work:
        for index, scenario in enumerate(SCENARIOS):
            results.append(run(scenario, index, Path(work), data_dir, settings))
            print(f"  {scenario.name}: {results[-1].seconds:.1f} s", flush=True)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
