"""Read a sweep's runs back from MLflow as RunRecords."""

from __future__ import annotations

from mlflow.entities import Run

from sweep.records import SEQUENCE_KEYS, RunRecord
from sweep.tracking import CONFIG_HASH, ROLE, Tracker


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


def latest_attempts(records: list[RunRecord]) -> list[RunRecord]:
    """Drop failed or interrupted attempts of a config that later finished (a resumed sweep)."""
    finished = {r.tags.get(CONFIG_HASH) for r in records if r.ok}
    return [r for r in records if r.ok or r.tags.get(CONFIG_HASH) not in finished]


def sweep_records(tracker: Tracker, parent_id: str) -> list[RunRecord]:
    """The child runs of one sweep, one per sequence once it has finished."""
    return latest_attempts([to_record(run) for run in tracker.children(parent_id)])


def experiment_records(tracker: Tracker) -> list[RunRecord]:
    """Every sequence run of the experiment, across sweeps (parents left out)."""
    return [
        to_record(run)
        for run in tracker.search("")
        if run.data.tags.get(ROLE) in ("child", "single")
    ]
