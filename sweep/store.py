"""Read a sweep's runs back from MLflow as RunRecords."""

from __future__ import annotations

from mlflow.entities import Run

from sweep.records import SEQUENCE_KEYS, RunRecord
from sweep.tracking import ROLE, Tracker


def to_record(run: Run) -> RunRecord:
    tags = dict(run.data.tags)
    return RunRecord(
        run_id=run.info.run_id,
        sequence={k: tags.get(f"sequence.{k}", "?") for k in SEQUENCE_KEYS},
        metrics=dict(run.data.metrics),
        status=run.info.status,
        seed=int(tags.get("seed", 0)),
        error=tags.get("error", ""),
        tags=tags,
    )


def sweep_records(tracker: Tracker, parent_id: str) -> list[RunRecord]:
    """The child runs of one sweep."""
    return [to_record(run) for run in tracker.children(parent_id)]


def experiment_records(tracker: Tracker) -> list[RunRecord]:
    """Every sequence run of the experiment, across sweeps (parents left out)."""
    return [
        to_record(run)
        for run in tracker.search("")
        if run.data.tags.get(ROLE) in ("child", "single")
    ]
