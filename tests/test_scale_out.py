"""Scaling out: jobs as Ray tasks, one shared MLflow server, an Optuna search.

Everything stays on loopback: the MLflow server binds 127.0.0.1, and Ray runs
with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, without which Ray 2.60 replaces
127.0.0.1 by the machine's address and listens on every interface. Processes
a test starts run in their own session, and whatever is left of a session
(Ray's daemons included) is ended when the test ends, pass or fail.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.config import ROOT, compose, sweep_env
from helpers.processes import SAFETY_NET_SECONDS, end_session, session_members
from helpers.sweeps import (
    check_one_finished_sweep,
    check_winners_are_the_stored_best,
    new_store,
    run_sweep,
    runs_by_role,
    seed_store,
    store,
)
from helpers.sweeps import sweep_command as quick_sweep_command
from omegaconf import OmegaConf

RANKING_FILES = {"ranking.md", "ranking.json", "tradeoffs.png", "reproduction.md"}


@pytest.fixture
def sessions() -> Iterator[list[int]]:
    """Session ids of the processes a test starts; what is left of them is ended at teardown.
    Its checks are done by then: 2 s for an orderly exit (an MLflow server's took ~10 s),
    then SIGKILL."""
    started: list[int] = []
    yield started
    for sid in started:
        end_session(sid, grace=2.0)


def start(
    command: list[str], env: dict[str, str], log: Path, sessions: list[int]
) -> subprocess.Popen:
    """A process in a new session (its pid is the session id), output to ``log``."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    sessions.append(process.pid)
    return process


@dataclass(frozen=True)
class TrackingServer:
    uri: str
    artifacts: Path  # where the server keeps the artifacts it is sent


SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""As the README starts a server: without MLflow's job runner (its GenAI jobs), whose ~8
processes cost ~28 CPU s in the server's first half minute and serve no sweep."""


def start_server(
    server_dir: Path, sessions: list[int], *artifact_options: str
) -> tuple[subprocess.Popen, str, Path]:
    """``mlflow server`` on a port the OS picked; another one if that port was taken
    meanwhile (the server cannot be handed a bound socket). ``artifact_options``: where it
    keeps artifacts (by default it serves them, from ``server_dir/artifacts``). Its store
    is a new one from :func:`new_store`."""
    if not artifact_options:
        artifact_options = (
            *("--artifacts-destination", str(server_dir / "artifacts"), "--serve-artifacts"),
        )
    new_store(server_dir / "mlflow.db")
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [
            *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
            *("--backend-store-uri", f"sqlite:///{server_dir / 'mlflow.db'}"),
            *artifact_options,
            *("--workers", "1"),
        ]
        log = server_dir / f"server-{port}.log"
        process = start(command, {**os.environ, **SERVER_ENV}, log, sessions)
        uri = f"http://127.0.0.1:{port}"
        if _answers(process, uri, log):
            return process, uri, log
        assert "address already in use" in log.read_text().lower(), log.read_text()[-3000:]
    raise AssertionError("no free loopback port for mlflow server in 5 tries")


def _answers(process: subprocess.Popen, uri: str, log: Path) -> bool:
    """Wait until the server answers /health (True) or its process ends (False)."""
    deadline = time.monotonic() + SAFETY_NET_SECONDS
    while process.poll() is None:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        assert time.monotonic() < deadline, "mlflow server did not start:\n" + log.read_text()
        time.sleep(0.5)  # polling the server: it says nothing when it is ready
    return False


@pytest.fixture
def mlflow_server(tmp_path: Path, sessions: list[int]) -> TrackingServer:
    """``mlflow server`` on loopback: SQLite store, artifacts proxied by the server."""
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    _, uri, _ = start_server(server_dir, sessions)
    return TrackingServer(uri, server_dir / "artifacts")


@pytest.fixture
def ray_dir() -> Iterator[Path]:
    """A private Ray folder, short enough for Ray's socket paths (at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("launcher", "address", "object_store"),
    [("ray_local", "local", 78643200), ("ray_cluster", "auto", None)],
)
def test_ray_launcher_configs_forward_the_outputs_to_the_workers(
    isolated: Path, launcher: str, address: str, object_store: int | None
) -> None:
    cfg = compose([f"hydra/launcher={launcher}"], with_hydra=True)
    ray = OmegaConf.to_container(cfg.hydra.launcher.ray, resolve=True)
    assert ray["init"]["address"] == address
    assert ray["init"]["object_store_memory"] == object_store  # Ray refuses one when joining
    assert ray["init"]["runtime_env"]["env_vars"]["SWEEP_OUTPUTS"] == str(isolated / "outputs")
    assert ray["remote"] == {"num_cpus": 1}


def _listening(pids: set[int]) -> set[str]:
    """Local addresses the processes ``pids`` listen on (TCP), from ``ss``."""
    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    found = set()
    for line in table.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.add(line.split()[3].rsplit(":", 1)[0])
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.strip("[]"))
    mapped = ip.ipv4_mapped if ip.version == 6 else None  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.mark.slow
@pytest.mark.needs("iproute2")
def test_ray_jobs_record_into_a_shared_tracking_server_on_loopback_only(
    tmp_path: Path, mlflow_server: TrackingServer, ray_dir: Path, sessions: list[int]
) -> None:
    """Jobs as Ray tasks of a local Ray instance the sweep starts, recording into a tracking
    server. Started without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: the sweep sets it, and no
    process of the sweep (Ray's daemons included) listens on anything but loopback."""
    sweep_dir = tmp_path / "outputs" / "sweep"
    command = quick_sweep_command(
        sweep_dir,
        "quantize=none,int8",  # two jobs of one trained model
        "hydra/launcher=ray_local",
        f"+hydra.launcher.ray.init._temp_dir={ray_dir}",
        "threads=1",
        f"tracking.uri={mlflow_server.uri}",
    )
    env = sweep_env(tmp_path)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    log = tmp_path / "sweep.log"
    sweep = start(command, env, log, sessions)
    addresses: set[str] = set()
    deadline = time.monotonic() + SAFETY_NET_SECONDS
    while sweep.poll() is None:  # sampling what the sweep's processes listen on
        addresses |= _listening(set(session_members(sweep.pid)))
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    output = log.read_text()
    assert sweep.returncode == 0, output[-3000:]
    assert "(_run_job pid=" in output  # the jobs ran as Ray tasks, not in this process
    assert addresses, "no Ray process was seen listening"
    assert all(_loopback(address) for address in addresses), addresses
    gcs_log = next(ray_dir.glob("session_*/logs/gcs_server.out")).read_text()
    assert "node_address=127.0.0.1" in gcs_log

    parents, children = runs_by_role(tmp_path, mlflow_server.uri)
    parent = check_one_finished_sweep(parents, children, jobs=2)
    # Two Ray workers, one training: the cache lock works across Ray's processes too.
    assert sorted(c.data.metrics["train_cache_hit"] for c in children) == [0, 1]

    # Artifacts went through the server (mlflow-artifacts:/), never to a local path.
    client, experiment_id = store(tmp_path, mlflow_server.uri)
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    for child in children:
        assert "model.tflite" in {a.path for a in client.list_artifacts(child.info.run_id)}
        stored = mlflow_server.artifacts / experiment_id / child.info.run_id / "artifacts"
        assert (stored / "model.tflite").stat().st_size == child.data.metrics["tflite_bytes"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= RANKING_FILES
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not (tmp_path / "outputs" / "mlartifacts").exists()

    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    assert ranking["runs"] == 2 and ranking["failed"] == []
    check_winners_are_the_stored_best(ranking, children)


@pytest.mark.slow
def test_optuna_search_records_every_trial_under_one_parent(tmp_path: Path) -> None:
    seed_store(tmp_path)
    result = run_sweep(tmp_path, "experiment=optuna_search", "hydra.sweeper.n_trials=3")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "sweep of 3 jobs" in output  # count_jobs read hydra.sweeper.n_trials

    parents, children = runs_by_role(tmp_path)
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["sequence"] for c in children} == {"mnist · cnn · fit · pruning → int8"}
    knobs = ("pretrain.final_sparsity", "model.filters", "quantize.calibration_samples")
    assert len({tuple(c.data.params[k] for k in knobs) for c in children}) == 3

    sweep_dir = tmp_path / "outputs" / "sweep"
    assert json.loads((sweep_dir / "ranking.json").read_text())["runs"] == 3
    # Optuna received both objectives of each trial: its Pareto set is made of stored runs.
    stored = {(c.data.metrics["tflite_bytes"], c.data.metrics["tflite_accuracy"]) for c in children}
    solutions = OmegaConf.load(sweep_dir / "optimization_results.yaml").solutions
    assert solutions and {tuple(s["values"]) for s in solutions} <= stored


@pytest.mark.slow
def test_optuna_trials_without_a_value_fail_alone_and_the_sweep_still_ranks(
    tmp_path: Path,
) -> None:
    """Every trial fails; after ``max_failures_in_a_row`` of them (2: one batch of n_jobs=2)
    the setup, not a trial, is taken to be broken and the search stops short of n_trials."""
    # Below pretrain.initial_sparsity (0.5): every trial stops at validation, before any training.
    result = run_sweep(
        tmp_path,
        "experiment=optuna_search",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.max_failures_in_a_row=2",
        "pretrain.final_sparsity=interval(0.1, 0.4)",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    assert "2 trials in a row failed; stopping" in output
    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    assert len(ranking["failed"]) == 2
    assert all("pretrain.final_sparsity" in f["error"] for f in ranking["failed"])


def test_a_job_without_its_objective_returns_no_value() -> None:
    from sweep.__main__ import _objective

    metrics = {"tflite_bytes": 22_500.0, "tflite_accuracy": 0.98}
    assert _objective(metrics, "tflite_accuracy") == 0.98
    assert _objective(metrics, ["tflite_bytes", "tflite_accuracy"]) == (22_500.0, 0.98)
    assert _objective({}, ["tflite_bytes", "tflite_accuracy"]) is None
    assert _objective({"tflite_accuracy": math.nan}, "tflite_accuracy") is None
