"""Read a sweep's runs back from MLflow as RunRecords."""

from __future__ import annotations

import dataclasses

from mlflow.entities import Run

from sweep.groups import SEQUENCE_KEYS
from sweep.ranking.run_records import VARIANT, RunRecord
from sweep.stores.tracking import CONFIG_HASH, ROLE, SETTINGS_TAG, Tracker


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


def with_variants(records: list[RunRecord]) -> list[RunRecord]:
    """Name each run's knobs that differ within this set of runs (its ``variant``).

    Settings every run shares (``dataset.train_limit=600`` for a whole sweep) say
    nothing about the difference between sequences, so they are left out.
    """
    tokens = [set(r.tags.get(SETTINGS_TAG, "").split()) for r in records]
    common = set.intersection(*tokens) if tokens else set()
    return [
        dataclasses.replace(r, sequence={**r.sequence, VARIANT: " ".join(sorted(t - common))})
        for r, t in zip(records, tokens, strict=True)
    ]


SHORT_SCHEDULE = ("search.fidelity", "rung0")
"""The tag of a multi-fidelity search's rung-0 run (``sweep.search.fidelity``): a model
trained on a short schedule to decide whether to train it in full, never a final model."""


def final_models(records: list[RunRecord]) -> list[RunRecord]:
    """Leave out short-schedule search runs: the ranking names models a deployer would get."""
    key, value = SHORT_SCHEDULE
    return [r for r in records if r.tags.get(key) != value]


def latest_attempts(records: list[RunRecord]) -> list[RunRecord]:
    """Drop failed or interrupted attempts of a config that later finished (a resumed sweep)."""
    finished = {r.tags.get(CONFIG_HASH) for r in records if r.ok}
    return [r for r in records if r.ok or r.tags.get(CONFIG_HASH) not in finished]


def sweep_records(tracker: Tracker, parent_id: str) -> list[RunRecord]:
    """The child runs of one sweep, one per sequence once it has finished."""
    records = final_models([to_record(run) for run in tracker.children(parent_id)])
    return with_variants(latest_attempts(records))


def experiment_records(tracker: Tracker) -> list[RunRecord]:
    """Every sequence run of the experiment, across sweeps (parents left out)."""
    runs = [run for run in tracker.search("") if run.data.tags.get(ROLE) in ("child", "single")]
    return final_models([to_record(run) for run in runs])
