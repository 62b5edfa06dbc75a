"""Running real sweeps in a subprocess and reading their MLflow store independently."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from helpers.config import ROOT, sweep_env
from helpers.preloaded import run_module
from helpers.processes import SAFETY_NET_SECONDS, Followed

QUICK = [
    "dataset.train_limit=600",
    "dataset.test_limit=300",
    "train.epochs=1",
    "measure.windows=3",
    "measure.window_ms=2",
    "measure.warmup_ms=5",
]
GRID = ["pretrain=none,pruning", "quantize=none,int8"]
BEST = {
    "smallest": ("tflite_bytes", min),
    "most_accurate": ("tflite_accuracy", max),
    "fastest": ("latency_median_us", min),
}


@functools.cache
def _new_store_bytes() -> bytes:
    """An MLflow store as MLflow creates it (tables, migrations, its Default experiment),
    made once per test process."""
    with tempfile.TemporaryDirectory(prefix="store-") as folder:
        db = Path(folder) / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()
        return db.read_bytes()


def new_store(db: Path) -> None:
    """A new, empty MLflow store at ``db``, as MLflow creates it, without running MLflow's
    68 schema migrations again (~3 s each time, in a sweep or in ``mlflow server``)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(_new_store_bytes())


def seed_store(root: Path) -> None:
    """Put a new, empty MLflow store where a sweep writing under ``root`` opens it.

    Tests whose sweeps are expected to record runs call this first; those checking that
    a refused sweep creates no store at all do not, and sweeps outside these helpers
    still create their stores themselves."""
    new_store(root / "outputs" / "mlflow.db")


def sweep_command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sweep",
        "--multirun",
        f"hydra.sweep.dir={sweep_dir}",
        *QUICK,
        *overrides,
    ]


def run_sweep(
    tmp_path: Path,
    *overrides: str,
    sweep_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    sweep_dir = sweep_dir or tmp_path / "outputs" / "sweep"
    return run_module(
        "sweep",
        sweep_command(sweep_dir, *overrides)[3:],
        env={**sweep_env(tmp_path), **(extra_env or {})},
        cwd=ROOT,
        timeout=SAFETY_NET_SECONDS,
    )


def store(tmp_path: Path, uri: str | None = None) -> tuple[MlflowClient, str]:
    """The sweep experiment in the embedded store under tmp_path, or in the server at ``uri``."""
    client = MlflowClient(uri or f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    return client, client.get_experiment_by_name("sweep").experiment_id


def recorded_runs(tmp_path: Path) -> list:
    """Every run of every experiment in the embedded store under tmp_path (none if the
    command never created the store)."""
    db = tmp_path / "outputs" / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def runs_by_role(tmp_path: Path, uri: str | None = None) -> tuple[list, list]:
    client, experiment = store(tmp_path, uri)
    runs = client.search_runs([experiment], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") == "child"]
    return parents, children


def check_winners_are_the_stored_best(ranking: dict, children: list) -> None:
    """Each winner of ranking.json is the child run with the best stored metric among those
    above the accuracy floor (the best stored accuracy minus rank.max_accuracy_drop)."""
    floor = ranking["accuracy_floor"]["mnist"]
    accuracies = [c.data.metrics["tflite_accuracy"] for c in children]
    assert floor["reference_accuracy"] == max(accuracies)
    for objective, (metric, best) in BEST.items():
        winner = ranking["winners"]["mnist"][objective]
        eligible = [
            c
            for c in children
            if objective == "most_accurate"
            or c.data.metrics["tflite_accuracy"] >= floor["floor_accuracy"] - 1e-12
        ]
        stored_best = best(c.data.metrics[metric] for c in eligible)
        assert winner["metrics"][metric]["mean"] == stored_best
        winner_run = next(c for c in children if c.info.run_id in winner["run_ids"])
        assert winner_run.data.metrics[metric] == stored_best


def check_one_finished_sweep(parents: list, children: list, jobs: int):
    """One FINISHED parent with one FINISHED child per job number; returns the parent."""
    assert len(parents) == 1 and len(children) == jobs
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert sorted(c.data.tags["sweep.job"] for c in children) == [str(n) for n in range(jobs)]
    return parent


def kill_sweep_when(tmp_path: Path, sweep_dir: Path, marker: str, *overrides: str) -> str:
    """Start a sweep, SIGKILL its whole process group when ``marker`` is printed (the run
    in progress is left RUNNING, as after a crash), and return what it printed."""
    sweep = Followed(sweep_command(sweep_dir, *overrides), sweep_env(tmp_path))
    sweep.wait_for(marker)
    sweep.signal_group(signal.SIGKILL)
    assert sweep.finish() == -signal.SIGKILL, sweep.output[-3000:]
    return sweep.output
