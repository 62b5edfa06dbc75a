"""Where a sweep writes, odd but legal paths, credentials and strict JSON.

Every path a sweep writes to lies under outputs/ whatever the route (an experiment's or
a server's artifact location, the search's storage), outputs/ may be a link, a folder
may hold an apostrophe, a password in tracking.uri reaches no store, artifact or log
line, and every JSON file parses with a strict parser. Real MLflow (embedded and a
server), real Hydra sweeps in a subprocess; which Ray the sweep keeps on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import helpers.sweeps
import pytest
import test_scale_out as scale_out
from helpers.config import DATA, ROOT, compose, sweep_env
from helpers.preloaded import run_module
from helpers.processes import SAFETY_NET_SECONDS
from helpers.sweeps import run_sweep, runs_by_role
from test_scale_out import TrackingServer, start_server

mlflow_server, sessions = scale_out.mlflow_server, scale_out.sessions
QUICK = helpers.sweeps.QUICK
GRID = ["quantize=none,int8"]
PASSWORD = "s3cr3t-Pa55"


def _strict(text: str):
    """``json.loads`` that fails on NaN, Infinity and -Infinity, as strict parsers do."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# --- artifact locations and the search's storage ---------------------------------------


def test_an_experiment_keeping_artifacts_elsewhere_is_refused(isolated: Path) -> None:
    from mlflow.tracking import MlflowClient

    from sweep.pipeline.job import run
    from sweep.settings import ConfigError

    elsewhere = isolated / "elsewhere"
    elsewhere.mkdir()
    (isolated / "outputs").mkdir()
    client = MlflowClient(f"sqlite:///{isolated / 'outputs' / 'mlflow.db'}")
    client.create_experiment("sweep", artifact_location=elsewhere.as_uri())  # made by anyone

    with pytest.raises(ConfigError, match=r"artifact location of experiment 'sweep'.*outside"):
        run(compose(QUICK))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_a_server_handing_out_local_artifact_locations_elsewhere_is_refused(
    tmp_path: Path, sessions: list[int]
) -> None:
    """A server without --serve-artifacts names a file: location; the client writes there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    options = ("--default-artifact-root", elsewhere.as_uri(), "--no-serve-artifacts")
    _, uri, _ = start_server(server_dir, sessions, *options)
    done = run_module(
        "sweep",
        [*QUICK, f"tracking.uri={uri}"],
        env=sweep_env(tmp_path),
        cwd=ROOT,
        timeout=SAFETY_NET_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    lines = [line for line in output.splitlines() if "artifact location of experiment" in line]
    assert len(lines) == 1 and "outside the outputs folder" in lines[0], output[-3000:]
    assert "Traceback" not in output
    assert list(elsewhere.rglob("*")) == []


@pytest.mark.slow
def test_a_search_storage_outside_outputs_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_sweep(
        tmp_path,
        "hydra/sweeper=search",
        "model.filters=int(interval(4,6))",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweeper.storage=sqlite:///{elsewhere / 'optuna.db'}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "hydra.sweeper.storage=" in line]
    assert len(lines) == 1 and "outside the outputs folder" in lines[0], output[-3000:]
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


# --- odd but legal paths ------------------------------------------------------------------


def _sweep_quoted(home: Path, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """A sweep into ``sweep_dir``, written as a user must write a folder with an apostrophe
    on Hydra's command line: double-quoted."""
    return run_module(
        "sweep",
        ["--multirun", f'hydra.sweep.dir="{sweep_dir}"', *QUICK, *overrides],
        env=sweep_env(home),
        cwd=ROOT,
        timeout=SAFETY_NET_SECONDS,
    )


@pytest.mark.slow
def test_an_apostrophe_in_the_outputs_and_sweep_folder_works_and_resumes(tmp_path: Path) -> None:
    home = tmp_path / "o'brien"  # SWEEP_OUTPUTS and the sweep folder both hold it
    sweep_dir = home / "outputs" / "it's a sweep"
    result = _sweep_quoted(home, sweep_dir, *GRID)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    parents, children = runs_by_role(home)
    assert len(parents) == 1 and len(children) == 2
    assert parents[0].data.tags["sweep.id"] == str(sweep_dir)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    ranking = _strict((sweep_dir / "ranking.json").read_text())  # single seed: no NaN either
    assert ranking["runs"] == 2 and ranking["failed"] == []

    again = _sweep_quoted(home, sweep_dir, *GRID)  # the parent is found again: a resume
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert (again.stdout + again.stderr).count("already finished") == 2
    assert len(runs_by_role(home)[0]) == 1


@pytest.mark.slow
def test_outputs_as_a_link_to_a_data_disk_takes_a_default_run(tmp_path: Path) -> None:
    """A copy of the project whose outputs/ links elsewhere: the default run (no
    SWEEP_OUTPUTS) writes through the link instead of being refused."""
    project = tmp_path / "project"
    for part in ("sweep", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    disk = tmp_path / "data-disk" / "outputs"
    disk.mkdir(parents=True)
    (project / "outputs").symlink_to(disk, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_OUTPUTS"}
    env.update(PYTHONPATH=str(project), SWEEP_DATA_DIR=str(DATA), HYDRA_FULL_ERROR="0")
    done = subprocess.run(
        [sys.executable, "-m", "sweep", *QUICK],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert (
        f"{project / 'sweep'}"
        in subprocess.run(
            [sys.executable, "-c", "import sweep; print(sweep.__file__)"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    )  # the copy ran, not the project it was copied from
    assert (disk / "mlflow.db").exists() and any((disk / "runs").iterdir())


# --- credentials -----------------------------------------------------------------------------


def _holding(root: Path, secret: str) -> list[str]:
    """Files under ``root`` whose bytes hold ``secret``."""
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


@pytest.mark.slow
def test_a_password_in_tracking_uri_reaches_no_store_artifact_or_log_line(
    tmp_path: Path, mlflow_server: TrackingServer
) -> None:
    uri = mlflow_server.uri.replace("http://", f"http://alice:{PASSWORD}@")
    result = run_sweep(tmp_path, *GRID, f"tracking.uri={uri}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    parents, children = runs_by_role(tmp_path, mlflow_server.uri)
    assert len(parents) == 1 and len(children) == 2
    assert children[0].data.params["tracking.uri"].startswith("http://alice:***@127.0.0.1")
    server = mlflow_server.artifacts.parent
    assert _holding(server, PASSWORD) == []  # the store's database, every artifact
    leaked = [line for line in output.splitlines() if PASSWORD in line]
    assert leaked == []  # and no log line
    log_files = [p for p in (tmp_path / "outputs" / "sweep").rglob("*.log")]
    assert log_files and not [p for p in log_files if PASSWORD in p.read_text()]


# --- strict JSON -----------------------------------------------------------------------------


def test_ranking_json_holds_null_where_nothing_was_measured() -> None:
    from sweep.ranking.rank import Ranking

    ranking = Ranking("single-seed sweep")
    ranking.winners = {
        "mnist": {"smallest": {"metrics": {"tflite_bytes": {"mean": 24416.0, "low": float("nan")}}}}
    }
    ranking.floors = {"mnist": {"floor_accuracy": float("inf")}}
    parsed = _strict(ranking.to_json())
    assert parsed["winners"]["mnist"]["smallest"]["metrics"]["tflite_bytes"]["low"] is None
    assert parsed["accuracy_floor"]["mnist"] == {"floor_accuracy": None}


# --- the stock Ray launcher ------------------------------------------------------------------
# What RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does to a Ray the sweep starts (every process on
# loopback) is shown end to end once, with ray_local (tests/test_scale_out.py): Ray is the
# suite's heaviest start. Here: the sweep sets it for each launcher config that starts Ray.


@pytest.mark.parametrize(
    ("launcher", "environment", "kept_on_loopback"),
    [
        ("ray", {}, True),  # Hydra's stock config (address: null) starts a new Ray
        ("ray_local", {}, True),  # address: local, always a new Ray
        ("ray", {"RAY_ADDRESS": "10.0.0.5:6379"}, False),  # joins the user's cluster
        ("ray_cluster", {}, False),  # address: auto, joins
        ("ray", {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}, False),  # the user's own value
        ("basic", {}, False),  # no Ray at all
    ],
)
def test_every_ray_the_sweep_starts_is_kept_on_loopback(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    launcher: str,
    environment: dict[str, str],
    kept_on_loopback: bool,
) -> None:
    from sweep.cli.sweep_callback import RAY_LOOPBACK_ENV, keep_local_ray_on_loopback

    for name in (RAY_LOOPBACK_ENV, "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if (constants := sys.modules.get("ray._private.ray_constants")) is not None:
        monkeypatch.setattr(constants, "ENABLE_RAY_CLUSTER", constants.ENABLE_RAY_CLUSTER)
    keep_local_ray_on_loopback(compose([f"hydra/launcher={launcher}"], with_hydra=True))
    expected = "0" if kept_on_loopback else environment.get(RAY_LOOPBACK_ENV)
    assert os.environ.get(RAY_LOOPBACK_ENV) == expected
