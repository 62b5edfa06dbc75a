"""What the tests' preloaded server saves: test files run with every ``python -m`` command
forked from it (``SWEEP_TESTS_FORK=1``, the default) beside plain subprocesses
(``SWEEP_TESTS_FORK=0``), alternating, in one run, wall clock and CPU (the pytest process
and everything it started).

    .venv/bin/python benchmarks/suite_cost.py                      # test_sweep_cli.py, 2 rounds
    .venv/bin/python benchmarks/suite_cost.py --rounds 1 tests/test_search.py -n 2

Arguments after the options go to pytest (default: ``tests/test_sweep_cli.py -n 0``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"plain": "0", "forked": "1"}


def _timed(pytest_args: list[str], fork: str) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest run; fails loudly if a test fails."""
    env = {**os.environ, "SWEEP_TESTS_FORK": fork}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"pytest failed (SWEEP_TESTS_FORK={fork}):\n{done.stdout[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each arm, alternating")
    options, pytest_args = parser.parse_known_args()
    pytest_args = pytest_args or ["tests/test_sweep_cli.py", "-n", "0"]
    figures: dict[str, list[tuple[float, float]]] = {arm: [] for arm in ARMS}
    for round_ in range(1, options.rounds + 1):
        for arm, fork in ARMS.items():
            wall, cpu = _timed(pytest_args, fork)
            figures[arm].append((wall, cpu))
            print(f"round {round_} {arm:>6}: {wall:7.1f} s wall {cpu:7.1f} CPU s", flush=True)
    print(f"\npytest {' '.join(pytest_args)}, median of {options.rounds}:")
    medians = {
        arm: tuple(statistics.median(run[i] for run in runs) for i in (0, 1))
        for arm, runs in figures.items()
    }
    for arm, (wall, cpu) in medians.items():
        print(f"  {arm:>6}: {wall:7.1f} s wall {cpu:7.1f} CPU s")
    (pw, pc), (fw, fc) = medians["plain"], medians["forked"]
    print(f"  forked / plain: {fw / pw:.2f} wall, {fc / pc:.2f} CPU")


if __name__ == "__main__":
    main()
