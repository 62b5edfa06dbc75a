"""MLflow bookkeeping: one parent run per sweep, one child run per sequence.

Uses the explicit ``MlflowClient`` rather than the fluent API: several jobs may
share a process (basic launcher) or a store (joblib, Ray), and no job may
depend on another's "active run".

Jobs of one machine share the embedded SQLite store. MLflow waits 20 s for a
locked database and then gives up, losing the run; so every client call on a
SQLite store is retried with backoff while SQLite says "database is locked",
for up to ``LOCK_RETRY_SECONDS``. A store that cannot be reached at all fails
at once with one line (``sweep.stores.paths.check_store_reachable``).
"""

from __future__ import annotations

import functools
import logging
import random
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from sweep.stores.paths import check_store_reachable, outputs_root, resolve_tracking_uri

log = logging.getLogger(__name__)
for noisy in ("alembic", "mlflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
# Logs a traceback for every "database is locked" before raising it: the retry below decides.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

LOCK_RETRY_SECONDS = 180.0
"""How long a call waits out a locked SQLite store, on top of MLflow's own 20 s per try."""

ROLE, SWEEP_ID, CONFIG_HASH = "sweep.role", "sweep.id", "sweep.config_hash"
TOTAL_JOBS = "sweep.total_jobs"
SETTINGS_TAG = "sequence.settings"  # command-line knobs that tell two runs of a sequence apart
_PARAM_LIMIT = 6000  # MLflow's longest param value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` → ``{"train.epochs": 3}``; lists stay one value."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _locked(error: BaseException) -> bool:
    """Whether SQLite refused a call because another process holds the database."""
    seen: BaseException | None = error
    while seen is not None:
        if "database is locked" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_when_locked(call: Callable, budget: float = LOCK_RETRY_SECONDS) -> Callable:
    """``call``, retried with jittered exponential backoff while the database is locked.

    A locked SQLite write is rolled back whole, so calling again cannot record twice.
    """

    @functools.wraps(call)
    def retried(*args: Any, **kwargs: Any) -> Any:
        deadline, attempt = time.monotonic() + budget, 0
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as error:
                if not _locked(error) or time.monotonic() >= deadline:
                    raise
                delay = min(0.1 * 2**attempt, 5.0) * random.uniform(0.5, 1.5)
                log.warning("MLflow store busy (database is locked): retrying in %.1f s", delay)
                time.sleep(delay)
                attempt += 1

    return retried


class _RetryingClient:
    """An ``MlflowClient`` whose every method retries while SQLite is locked."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        return retry_when_locked(value) if callable(value) else value


@functools.cache
def _client(uri: str) -> MlflowClient | _RetryingClient:
    """One client per store and process (making one costs ~0.2 s: a sweep's jobs share it)."""
    client = retry_when_locked(MlflowClient)(tracking_uri=uri)
    return _RetryingClient(client) if uri.lower().startswith("sqlite") else client


_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}
"""(store, experiment name) -> id, looked up once per process: a sweep's jobs share it."""


class Tracker:
    """The store of one experiment, created on first use."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        self.uri = resolve_tracking_uri(uri)
        known = _EXPERIMENT_IDS.get((self.uri, experiment))
        if known is None:
            check_store_reachable(self.uri)
        self.client = _client(self.uri)
        self.experiment_id = known or self._experiment(experiment)
        _EXPERIMENT_IDS[(self.uri, experiment)] = self.experiment_id

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        local = not self.uri.startswith(("http://", "https://", "databricks"))
        location = (outputs_root() / "mlartifacts").as_uri() if local else None
        return self._create_experiment(name, location)

    def _create_experiment(self, name: str, location: str | None) -> str:
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # a parallel job created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def search(self, filter_string: str) -> list:
        return self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=50000
        )

    def find_parent(self, sweep_id: str):
        runs = self.search(f"tags.`{ROLE}` = 'parent' and tags.`{SWEEP_ID}` = '{sweep_id}'")
        return runs[0] if runs else None

    def children(self, parent_id: str) -> list:
        return self.search(f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'")

    def start_run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **tags}
        if parent_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
        return self.client.create_run(self.experiment_id, tags=all_tags, run_name=name).info.run_id

    def log(
        self,
        run_id: str,
        metrics: Mapping[str, float] = {},
        params: Mapping[str, Any] = {},
        tags: Mapping[str, str] = {},
    ) -> None:
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)[:_PARAM_LIMIT]) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def log_artifacts(self, run_id: str, paths: Iterable[Path]) -> None:
        """Files and folders into the run's artifacts: one store call, then copies/uploads."""
        uri = self.client.get_run(run_id).info.artifact_uri
        repository = get_artifact_repository(uri, tracking_uri=self.uri)
        for path in paths:
            if path.is_dir():
                repository.log_artifacts(str(path), artifact_path=path.name)
            else:
                repository.log_artifact(str(path))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def fail(self, run_id: str, error: BaseException) -> None:
        """Record the error on the run at once, so a crash later loses nothing.

        Ctrl-C ends the run as KILLED (interrupted), anything else as FAILED.
        """
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
        self.log(run_id, tags={"error": text[:5000] or type(error).__name__})
        self.client.set_terminated(run_id, status="KILLED" if interrupted else "FAILED")
        error.recorded_run_id = run_id  # type: ignore[attr-defined]  # listed once, as this run

    def mark_stale(self, parent_id: str) -> int:
        """Runs left RUNNING under a parent by a killed process become KILLED."""
        stale = [r for r in self.children(parent_id) if r.info.status == "RUNNING"]
        for run in stale:
            self.log(run.info.run_id, tags={"error": "interrupted: the process running it ended"})
            self.client.set_terminated(run.info.run_id, status="KILLED")
        return len(stale)
