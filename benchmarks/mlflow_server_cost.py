"""What MLflow's job runner costs a machine that runs sweeps: ``mlflow server`` started as
the README starts it (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``) beside MLflow's default
(the job runner on), alternating, in one run. For each start: the seconds until the server
first answers ``/health``, the processes of its session then, and their CPU seconds a
settling time later (processes that ended before are not counted).

    .venv/bin/python benchmarks/mlflow_server_cost.py               # 2 rounds, 15 s settling
    .venv/bin/python benchmarks/mlflow_server_cost.py --rounds 3 --settle 30
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.processes import session_members  # noqa: E402  (the tests' own session listing)

ARMS = {"job runner off (README)": "false", "MLflow's default": "true"}
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _start(folder: Path, job_execution: str, settle: float) -> tuple[float, int, float]:
    """One server start: seconds to answer, processes then, their CPU ``settle`` s later."""
    port = _free_port()
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
        *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
        *("--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts"),
        *("--workers", "1"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": job_execution}
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    start = time.perf_counter()
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"mlflow server ended:\n{(folder / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        answered = time.perf_counter() - start
        processes = session_members(server.pid)
        time.sleep(settle)
        return answered, len(processes), _cpu_seconds(session_members(server.pid))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after the answer")
    options = parser.parse_args()
    results: dict[str, list[tuple[float, int, float]]] = {arm: [] for arm in ARMS}
    for round_ in range(options.rounds):
        for arm, value in ARMS.items():
            with tempfile.TemporaryDirectory(prefix="mlflow-server-") as folder:
                results[arm].append(_start(Path(folder), value, options.settle))
            answered, processes, cpu = results[arm][-1]
            print(f"round {round_ + 1} {arm}: answered after {answered:.1f} s, "
                  f"{processes} processes, {cpu:.1f} CPU s", flush=True)  # fmt: skip
    cpu = {arm: statistics.median(r[2] for r in runs) for arm, runs in results.items()}
    off, default = cpu.values()
    print(f"median CPU s by {options.settle:g} s after the answer: job runner off {off:.1f}, "
          f"default {default:.1f} ({default / off:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
