"""MLflow bookkeeping: one parent run per sweep, one child run per sequence.

Uses the explicit ``MlflowClient`` rather than the fluent API: several jobs may
share a process (basic launcher) or a store (joblib, Ray), and no job may
depend on another's "active run".

Jobs of one machine share the embedded SQLite store. MLflow waits 20 s for a
locked database and then gives up, losing the run; so every client call on a
SQLite store is retried with backoff while SQLite says "database is locked",
for up to ``LOCK_RETRY_SECONDS``. A store that cannot be reached at all fails
at once with one line (``sweep.stores.paths.check_store_reachable``).

What is recorded is redacted (:mod:`sweep.redact`: a password in ``tracking.uri`` never
becomes a param or a tag); runs are found by tag values of any spelling
(:func:`tag_filter`: a sweep folder named ``o'brien``); and artifacts go only where the
outputs-only rule allows (:meth:`Tracker.check_artifact_location`: an experiment or a
server that names a ``file:`` location elsewhere is refused).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from sweep.redact import redact
from sweep.stores.paths import (
    check_inside_outputs,
    check_store_reachable,
    local_artifact_path,
    outputs_root,
    resolve_tracking_uri,
)

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


_FILTER_QUOTED = re.compile(r"""['"\\]""")
"""Characters MLflow's filter grammar cannot carry inside a quoted value: it strips the
quotes of a value and unescapes nothing (checked on MLflow 3.17's SearchUtils)."""


def tag_filter(tags: Mapping[str, str]) -> str:
    """An MLflow filter for runs whose tags have these values: ``=`` on a plain value; a
    value with a quote or a backslash (a folder ``/home/o'brien``) becomes a ``LIKE``
    pattern with ``_`` (any one character) in their place, a superset that
    :meth:`Tracker.runs_tagged` narrows to exact matches."""
    clauses = []
    for key, value in tags.items():
        if _FILTER_QUOTED.search(value):
            clauses.append(f"tags.`{key}` LIKE '{_FILTER_QUOTED.sub('_', value)}'")
        else:
            clauses.append(f"tags.`{key}` = '{value}'")
    return " and ".join(clauses)


def runs_tagged(store: Any, tags: Mapping[str, str]) -> list:
    """Runs that ``store.search(filter)`` finds whose tags have exactly these values."""
    return [
        run
        for run in store.search(tag_filter(tags))
        if all(run.data.tags.get(k) == v for k, v in tags.items())
    ]


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
    """The store of one experiment, created on first use.

    ``allow_outside_outputs`` (the setting of that name) lets artifacts go to a local
    location outside the outputs folder.
    """

    def __init__(
        self, uri: str | None, experiment: str, allow_outside_outputs: bool = False
    ) -> None:
        self.uri = resolve_tracking_uri(uri)
        self.allow_outside_outputs = allow_outside_outputs
        if self.shown_uri != self.uri:  # MLflow prints each run's URL, credentials included
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        known = _EXPERIMENT_IDS.get((self.uri, experiment))
        if known is None:
            check_store_reachable(self.uri)
        self.client = _client(self.uri)
        self.experiment_id = known or self._experiment(experiment)
        _EXPERIMENT_IDS[(self.uri, experiment)] = self.experiment_id

    @property
    def shown_uri(self) -> str:
        """The store's URI as logs and messages show it (credentials redacted)."""
        return redact(self.uri)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            self.check_artifact_location(found.artifact_location, f"experiment {name!r}")
            return found.experiment_id
        local = not self.uri.startswith(("http://", "https://", "databricks"))
        location = (outputs_root() / "mlartifacts").as_uri() if local else None
        experiment_id = self._create_experiment(name, location)
        created = self.client.get_experiment(experiment_id)
        self.check_artifact_location(created.artifact_location, f"experiment {name!r}")
        return experiment_id

    def check_artifact_location(self, location: str | None, whose: str) -> None:
        """A local artifact location (``file:`` or a path) must lie under outputs/ unless
        allowed: an experiment made elsewhere, or a server, may name any folder of this
        machine, and the artifacts would be written there (ConfigError, one line)."""
        path = local_artifact_path(location or "")
        if path is not None:
            check_inside_outputs(
                path, f"the artifact location of {whose}", self.allow_outside_outputs
            )

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

    def runs_tagged(self, tags: Mapping[str, str]) -> list:
        """Runs of the experiment whose tags have exactly these values."""
        return runs_tagged(self, tags)

    def find_parent(self, sweep_id: str):
        runs = self.runs_tagged({ROLE: "parent", SWEEP_ID: sweep_id})
        return runs[0] if runs else None

    def children(self, parent_id: str) -> list:
        return self.runs_tagged({MLFLOW_PARENT_RUN_ID: parent_id})

    def start_run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
        name = redact(name)  # a run's name may show its settings
        all_tags = {MLFLOW_RUN_NAME: name, **{k: redact(str(v)) for k, v in tags.items()}}
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
        """Metrics, params and tags of a run; param and tag values are redacted."""
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, redact(str(v))[:_PARAM_LIMIT]) for k, v in params.items()],
            tags=[RunTag(k, redact(str(v))) for k, v in tags.items()],
        )

    def log_artifacts(self, run_id: str, paths: Iterable[Path]) -> None:
        """Files and folders into the run's artifacts: one store call, then copies/uploads."""
        uri = self.client.get_run(run_id).info.artifact_uri
        self.check_artifact_location(uri, f"run {run_id}")
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
        text = redact("".join(traceback.format_exception_only(type(error), error)).strip())
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
