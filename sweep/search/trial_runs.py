"""The trials' MLflow runs: found from the sweeper's side, and marked with the verdict.

The job (``sweep.pipeline.job``) opens and logs each run; the sweeper only knows the job number
it launched, so it finds the run by the tags every sweep child carries (``sweep.id``,
``sweep.job``). A job that found its config already finished (a resumed sweep) opened no
run: its trial is matched to the finished run with the same command-line knobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.groups import GROUPS
from sweep.pipeline.context import knob_settings
from sweep.search.constraints import Verdict
from sweep.stores.tracking import SETTINGS_TAG, SWEEP_ID, Tracker

JOB = "job"
"""Trial user attribute: the Hydra job number of the trial's latest job."""


def job_of(trial: Any) -> int:
    """The job number of a trial's latest job: the trial's own number, unless the
    multi-fidelity search (:mod:`sweep.search.fidelity`) ran it as jobs of other numbers."""
    return int(trial.user_attrs.get(JOB, trial.number))


def find_run(tracker: Tracker, sweep_id: str, job: int, parent_id: str | None, knobs: list[str]):
    runs = tracker.search(f"tags.`{SWEEP_ID}` = '{sweep_id}' and tags.`sweep.job` = '{job}'")
    runs = sorted(runs, key=lambda r: r.info.start_time, reverse=True)
    if runs:
        return runs[0]
    if parent_id is None:
        return None
    wanted = knob_settings(knobs, GROUPS)
    for run in tracker.children(parent_id):
        if run.info.status == "FINISHED" and run.data.tags.get(SETTINGS_TAG) == wanted:
            return run
    return None


def mark(
    tracker: Tracker,
    run_id: str,
    trial: int,
    role: str,
    verdict: Verdict | None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """``search.trial``, ``search.role`` and, for a measured trial, ``search.feasible`` plus
    ``search.reason`` (and one ``search.constraint.<name>`` metric per constraint)."""
    tags = {"search.trial": str(trial), "search.role": role, **(extra or {})}
    metrics: dict[str, float] = {}
    if verdict is not None:
        tags["search.reason"] = verdict.reason
        metrics["search.feasible"] = float(verdict.feasible)
        metrics.update({f"search.constraint.{k}": v for k, v in verdict.constraints.items()})
    tracker.log(run_id, metrics=metrics, tags=tags)
