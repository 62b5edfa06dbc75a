"""What a finished (or stopped) search reports: the feasible Pareto set, in the log, in
``<sweep dir>/optimization_results.yaml`` and as tags on the sweep's parent run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from sweep.search import fidelity

if TYPE_CHECKING:
    from sweep.search.space import Space
    from sweep.search.sweeper import Search

log = logging.getLogger("sweep")


def _dominates(a: list[float], b: list[float], signs: list[int]) -> bool:
    better_or_equal = all(s * x >= s * y for x, y, s in zip(a, b, signs, strict=True))
    return better_or_equal and any(s * x > s * y for x, y, s in zip(a, b, signs, strict=True))


def _short_schedule_only(trial: FrozenTrial) -> bool:
    """A multi-fidelity trial that was not promoted: its values are rung 0's."""
    return trial.user_attrs.get(fidelity.FIDELITY) == fidelity.RUNG0


def feasible_front(study: optuna.Study, directions: list[str]) -> list[FrozenTrial]:
    """COMPLETE full-schedule trials that meet every constraint and no other such trial
    dominates (a trial stopped at rung 0 is never feasible: its accuracy was not judged)."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    feasible = [
        t for t in study.trials
        if t.state == TrialState.COMPLETE and not _short_schedule_only(t)
        and all(v <= 0 for v in t.constraints.values())
    ]  # fmt: skip
    front = [
        t for t in feasible if not any(_dominates(o.values, t.values, signs) for o in feasible)
    ]
    unique: dict[tuple, FrozenTrial] = {}
    for t in sorted(front, key=lambda t: t.number):
        unique.setdefault(tuple(t.values), t)
    return sorted(unique.values(), key=lambda t: t.values)


def publish(study: optuna.Study, search: Search, space: Space) -> dict[str, Any]:
    objective = search.objective
    names = [objective] if isinstance(objective, str) else list(objective)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    interrupted = [t for t in finished if t.user_attrs.get("interrupted")]
    repeats = [t for t in finished if "duplicate_of" in t.user_attrs]
    trials = [t for t in finished if t not in interrupted and t not in repeats]
    stopped = [t for t in trials if _short_schedule_only(t)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t not in stopped]
    infeasible = [t for t in complete if not t.user_attrs.get("feasible", True)]
    front = feasible_front(study, search.directions)
    summary = {
        "name": study.study_name,
        "objectives": dict(zip(names, search.directions, strict=True)),
        "constraints": {
            "require_target": search.search.require_target,
            "max_accuracy_drop_pp": search.search.max_accuracy_drop,
            "target": search.target,
        },
        "reference_accuracy": study.user_attrs.get("reference_accuracy"),
        "reference_run": study.user_attrs.get("reference_run"),
        "trials": {
            "complete": len(complete),
            "infeasible": len(infeasible),
            "failed": sum(1 for t in trials if t.state == TrialState.FAIL),
            "interrupted_and_run_again": len(interrupted),
            "repeated_knobs_not_run": len(repeats),
            "stopped_at_rung0": len(stopped),
        },
        "rung_epochs": search.rung_epochs,
        "solutions": [
            {
                "number": t.number,
                "params": dict(t.params),
                "values": list(t.values),
                "run_id": t.user_attrs.get("run_id"),
            }
            for t in front
        ],
    }
    path = search.sweep_dir / "optimization_results.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(summary)))
    log.info(
        "search: %d trials (%d stopped at rung 0, %d infeasible, %d failed); %d feasible on "
        "the Pareto front (%s), written to %s",
        len(trials), len(stopped), len(infeasible), summary["trials"]["failed"], len(front),
        ", ".join(f"{n} {d}" for n, d in summary["objectives"].items()), path,
    )  # fmt: skip
    for t in front:
        log.info(
            "  trial %d: %s  ← %s",
            t.number,
            ", ".join(f"{n}={v:g}" for n, v in zip(names, t.values, strict=True)),
            " ".join(f"{k}={v}" for k, v in t.params.items()),
        )
    if search.parent_id:
        tags = {
            "search.study": str(search.settings.storage or search.sweep_dir / "study.journal"),
            "search.feasible_front": " ".join(str(t.user_attrs.get("run_id")) for t in front),
        }
        if summary["reference_accuracy"] is not None:
            tags["search.reference_accuracy"] = f"{summary['reference_accuracy']:.4f}"
        search.tracker.log(search.parent_id, tags=tags)
    return summary
