"""A search that spends its budget on promising models: two rungs of successive halving.

Why: a board search trial trains the whole schedule (``train.epochs``, 10) before the
accuracy constraint can reject it, yet most trials are hopeless after one or two epochs,
and what the rest of the constraints and objectives read does not depend on training
length at all: the architecture and the quantizer fix the ``.tflite`` size, the arena, the
flash and the board's instruction count. Optuna's pruners do not fit: they are
single-objective and report-based, while this search is multi-objective, constrained, and
runs each trial as a Hydra job. So the sweeper itself runs the rungs
(``hydra.sweeper.rung_epochs`` = e, ``train.epochs`` = E):

1. **Rung 0**: every trial is one job with ``train.epochs=e``. Its child run is tagged
   ``search.role=rung0`` and ``search.fidelity=rung0``: never ranked, never a solution.
2. **Promotion** (:func:`decide`), decided when the trial's rung 0 ends. A trial is
   promoted when

   a. it runs on the target and fits it (final already: training cannot change it);
   b. its rung-0 accuracy is *within reach*: at most ``search.max_accuracy_drop`` +
      ``hydra.sweeper.rung_reach_pp`` percentage points below the reference's rung-0
      accuracy (both after e epochs, so the comparison is like for like); and
   c. no trial promoted before it (and not found infeasible after its whole schedule)
      dominates it on the rung-0 objective values: at least as small and as fast (exact
      already) and as accurate after the same e epochs, better in one. Training it in
      full could only give a model that a known solution beats on size and latency and
      most likely on accuracy too.

   The reference is always promoted: its full-schedule accuracy is the constraint.
3. **Full**: a promoted trial runs again with the whole schedule (``search.fidelity=full``).
   Only this run is judged against every constraint, the accuracy drop included, and its
   values are the trial's values in the study.

A trial that is not promoted is told to Optuna with its rung-0 values as *infeasible*,
under the constraints ``promoted`` (1) and ``rung0_reach_pp`` (how far below reach it
was), besides the target's (``runs_on_target``, ``fits_target``); the accuracy
constraint is not judged on it. Constrained TPE then ranks it among the infeasible trials,
the unreachable ones below the reachable-but-dominated ones, and steers away from both.
The study's feasible front (:mod:`sweep.search.study_report`) and the ranking
(:mod:`sweep.ranking.store`) see full-schedule trials only.

A promoted trial trains its whole schedule from zero, not from its rung-0 weights: the
stage cache keeps weights only (no optimizer state), and a continued run would be a
different model from the one its config (``train.epochs=E``) names, so re-running that
config would not reproduce it. With e = 1 of 10 epochs that costs a tenth of a promoted
trial's training.

Job numbers: a trial runs up to two jobs, so jobs are numbered by a counter kept in the
study (``next_job``), and each trial records its latest job (``trial_runs.JOB``).
Resuming: a trial left running is queued again with the same knobs, as without rungs;
its rung-0 job then finds its finished run and is skipped, and a full-schedule job that
was killed reuses its trained stage from the cache if training had finished.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import optuna
from hydra.core.utils import JobReturn
from optuna.trial import FrozenTrial, Trial

from sweep.search import constraints, trial_runs

if TYPE_CHECKING:
    from sweep.search.space import Space
    from sweep.search.sweeper import Search

log = logging.getLogger("sweep")

ROLE, FIDELITY = "search.role", "search.fidelity"
RUNG0, FULL = "rung0", "full"
RUNG0_ATTR = "rung0"  # trial user attribute: the trial's rung-0 result (RungResult as a dict)
REFERENCE_RUNG0 = "reference_rung0_accuracy"  # study user attribute
NEXT_JOB = "next_job"  # study user attribute
ACCURACY = "tflite_accuracy"


@dataclass(frozen=True)
class RungResult:
    """What a trial's rung-0 job measured, as the promotion rule reads it."""

    trial: int
    values: tuple[float, ...]  # the objective values after rung_epochs, in the study's order
    accuracy: float  # tflite_accuracy after rung_epochs
    runs_and_fits: bool  # runs on the target's tflite-micro and fits it (always, off a board)


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    constraints: dict[str, float]  # told to Optuna when not promoted (<= 0 feasible)


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[int]) -> bool:
    """``a`` at least as good as ``b`` on every objective and better on one (signs: +1 max)."""
    pairs = list(zip(a, b, signs, strict=True))
    return all(s * x >= s * y for x, y, s in pairs) and any(s * x > s * y for x, y, s in pairs)


def reach_line(reference_accuracy: float, max_drop_pp: float | None, reach_pp: float) -> float:
    """The lowest rung-0 accuracy that is still within reach."""
    return reference_accuracy - ((max_drop_pp or 0.0) + reach_pp) / 100


def decide(
    trial: RungResult,
    others: Sequence[RungResult],
    line: float,
    directions: Sequence[str],
    is_reference: bool = False,
) -> Promotion:
    """The promotion rule (module docstring, 2a-c) for one trial's rung-0 result.

    ``others``: the rung-0 results that may dominate it (:func:`contenders`); ``line``:
    :func:`reach_line`.
    """
    if is_reference:
        return Promotion(True, "the reference: always trained in full", {})
    short_pp = 100 * (line - trial.accuracy)
    if not trial.runs_and_fits:
        return Promotion(False, "does not run on or fit the target", {"promoted": 1.0})
    if short_pp > 0:
        return Promotion(
            False,
            f"not promoted: rung-0 accuracy {100 * trial.accuracy:.2f}% is {short_pp:.2f} pp "
            f"below reach ({100 * line:.2f}%)",
            {"promoted": 1.0, "rung0_reach_pp": short_pp},
        )
    signs = [1 if d == "maximize" else -1 for d in directions]
    rivals = [o for o in others if o.trial != trial.trial]
    better = [o for o in rivals if _dominates(o.values, trial.values, signs)]
    if better:
        return Promotion(
            False,
            f"not promoted: dominated at rung 0 by trial {better[0].trial}",
            {"promoted": 1.0, "rung0_reach_pp": short_pp},
        )
    return Promotion(True, f"promoted: within reach ({short_pp:+.2f} pp) and not dominated", {})


def _results(study: optuna.Study) -> list[tuple[FrozenTrial, RungResult]]:
    """Every rung-0 result the study holds, with its trial (interrupted copies left out)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if RUNG0_ATTR in t.user_attrs and not t.user_attrs.get("interrupted"):
            raw = t.user_attrs[RUNG0_ATTR]
            out.append((t, RungResult(raw["trial"], tuple(raw["values"]), raw["accuracy"],
                                      raw["runs_and_fits"])))  # fmt: skip
    return out


def contenders(study: optuna.Study) -> list[RungResult]:
    """Rung-0 results that may dominate a new one: trials promoted to the whole schedule
    that were not found infeasible there (a batch-mate still training counts)."""
    out = []
    for t, r in _results(study):
        if t.user_attrs.get(FIDELITY) != FULL:
            continue
        told = t.state != optuna.trial.TrialState.RUNNING
        if not told or t.user_attrs.get("feasible"):
            out.append(r)
    return out


def _allocate(study: optuna.Study, count: int) -> int:
    """Reserve ``count`` job numbers (kept in the study: a resumed search never reuses one)."""
    first = int(study.user_attrs.get(NEXT_JOB, 0))
    study.set_user_attr(NEXT_JOB, first + count)
    return first


def _launch(
    search: Search, study: optuna.Study, trials: list[Trial], overrides: list[list[str]]
) -> list[JobReturn]:
    """One job per trial, numbered from the study's counter (recorded on each trial)."""
    first = _allocate(study, len(trials))
    for i, trial in enumerate(trials):
        trial.set_user_attr(trial_runs.JOB, first + i)
    return list(search.launcher.launch(overrides, initial_job_idx=first))


def rung0_overrides(overrides: list[str], epochs: int, target: Any = None) -> list[str]:
    """A trial's overrides with the short schedule (replacing a fixed ``train.epochs``); on a
    board, without tflite-micro's accuracy over the test set (``target.micro_accuracy``):
    promotion reads the desktop runtime's accuracy, and a rung-0 run is never ranked."""
    short = [o for o in overrides if not o.startswith(("train.epochs=", "target.micro_accuracy="))]
    quick = (
        ["target.micro_accuracy=false"] if target is not None and "micro_accuracy" in target else []
    )
    return [*short, f"train.epochs={epochs}", *quick]


def run_batch(search: Search, study: optuna.Study, space: Space, batch: list[Trial]) -> bool:
    """Rung 0 for the batch, then the whole schedule for the promoted trials."""
    epochs = search.rung_epochs
    assert epochs is not None
    target = search.config.get("target")
    knobs = [rung0_overrides(space.overrides(t.params), epochs, target) for t in batch]
    returns = _launch(search, study, batch, knobs)
    promoted: list[Trial] = []
    go_on = True
    for trial, ret, overrides in zip(batch, returns, knobs, strict=True):
        role = trial.user_attrs.get(ROLE, "trial")
        told = _rung0(search, study, trial, ret, overrides, role)
        go_on &= search._go_on(told is not None, role)
        if told:
            promoted.append(trial)
    if not promoted:
        return go_on
    full = [space.overrides(t.params) for t in promoted]
    returns = _launch(search, study, promoted, full)
    for trial, ret, overrides in zip(promoted, returns, full, strict=True):
        role = trial.user_attrs.get(ROLE, "trial")
        ok = search._tell(study, trial, ret, overrides, role)
        if ok and (run_id := trial.user_attrs.get("run_id")):
            search.tracker.log(run_id, tags={FIDELITY: FULL})
        go_on &= search._go_on(ok, role)
    return go_on


def _rung0(
    search: Search, study: optuna.Study, trial: Trial, ret: JobReturn, knobs: list[str], role: str
) -> bool | None:
    """Read a trial's rung-0 job and decide its promotion. None: the job failed (the trial
    is told FAIL); False: told as not promoted; True: to be trained in full."""
    run, values = search.measured(trial, ret, knobs)
    if run is None or values is None:
        search.fail_trial(study, trial, ret, run, role)
        return None
    metrics = dict(run.data.metrics)
    accuracy = float(metrics.get(ACCURACY, 0.0))
    # At rung 0 only the target's constraints are judged: the model's size and fit are
    # final, its accuracy is not (max_accuracy_drop=None leaves the accuracy out).
    target_only = replace(search.search, max_accuracy_drop=None)
    verdict = constraints.judge(metrics, target_only, None, search.target,
                                run.data.tags.get("mcu_reason", ""))  # fmt: skip
    result = RungResult(trial.number, tuple(values), accuracy, verdict.feasible)
    trial.set_user_attr(RUNG0_ATTR, asdict(result))
    trial.set_user_attr("rung0_run_id", run.info.run_id)
    if role == "reference":
        study.set_user_attr(REFERENCE_RUNG0, accuracy)
    reference = study.user_attrs.get(REFERENCE_RUNG0)
    if reference is None:  # the reference failed: nothing to reach; the search stops
        search.fail_trial(study, trial, ret, run, role)
        return None
    settings = search.search
    line = reach_line(reference, settings.max_accuracy_drop, search.settings.rung_reach_pp)
    decision = decide(result, contenders(study), line, search.directions,
                      role == "reference")  # fmt: skip
    if not verdict.feasible and role != "reference":  # the reference sets the constraint
        decision = Promotion(False, f"{verdict.reason}: not trained further",
                             {**verdict.constraints, **decision.constraints})  # fmt: skip
    extra: dict[str, Any] = {FIDELITY: RUNG0, "search.promoted": str(decision.promoted).lower(),
                             "search.reason": decision.reason}  # fmt: skip
    trial_runs.mark(search.tracker, run.info.run_id, trial.number, RUNG0, None, extra)
    log.info(
        "search: trial %d rung 0 (%d of %s epochs) %s → %s: %s",
        trial.number, search.rung_epochs, search.config.train.get("epochs"),
        " ".join(f"{k}={v}" for k, v in trial.params.items()),
        ", ".join(f"{v:g}" for v in result.values), decision.reason,
    )  # fmt: skip
    if decision.promoted:
        trial.set_user_attr(FIDELITY, FULL)  # from now on it may dominate later trials
        return True
    for name, bound in {**verdict.constraints, **decision.constraints}.items():
        trial.set_constraint(name, bound)
    trial.set_user_attr(FIDELITY, RUNG0)
    trial.set_user_attr("run_id", run.info.run_id)
    trial.set_user_attr("feasible", False)
    trial.set_user_attr("reason", decision.reason)
    study.tell(trial, list(result.values))
    return False
