"""The search loop: ask Optuna for a batch of trials, launch them as Hydra jobs, tell it
what each job measured and whether it meets the constraints.

Resumable: the study lives in a journal file in the sweep folder, trial number = Hydra
job number, and a re-run with the same ``hydra.sweep.dir`` loads it, marks trials a
killed process left RUNNING as failed (``interrupted``), queues their parameters again
and runs only what is left of the budget.

The journal is a file anyone who can write the sweep folder can edit, and Optuna runs a
queued trial's parameters even outside the declared space (with a warning). So every
trial taken from the journal (queued, or left RUNNING) must lie in the space (or be the
config's own reference trial): one outside it is failed with the reason ``refused``,
logged as a warning naming its parameters, and never run; it uses no budget, and the
rest of the study goes on (dropped rather than stopping the search: the other trials of
a journal are still good, and a user who narrowed the space between sessions gets the
same warning).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from sweep.errors import exits_on_error
from sweep.pipeline.context import INVALID_JOB_FILE, sweep_id_for
from sweep.search import constraints, fidelity, study_report, trial_runs
from sweep.search.search_settings import (
    SearchSettings,
    SweeperSettings,
    check_latency_metric,
    check_rungs,
    check_together,
    directions,
    rungs_in_use,
)
from sweep.search.space import Space, parse_space, reference_params
from sweep.settings import ConfigError, build
from sweep.stores.paths import check_inside_outputs, local_store_path
from sweep.stores.tracking import Tracker

log = logging.getLogger("sweep")
ROLE = "search.role"
REFUSED = "refused"  # user attr of a journal's trial outside the space: never run
SETTING_KEYS = tuple(f.name for f in SweeperSettings.__dataclass_fields__.values())


def _sampler(settings: SweeperSettings, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """Seeded by ``seed`` plus the trials the study already holds: a resumed search must not
    replay the random proposals of its first session (they would all be duplicates)."""
    seed = settings.seed + trials_so_far
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "nsga2":
        size = max(settings.n_startup_trials, 2)
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=size)
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=settings.n_startup_trials, multivariate=True
    )


def check_settings(
    raw: dict[str, Any], config: DictConfig
) -> tuple[SweeperSettings, SearchSettings]:
    """The sweeper's and the ``search`` block's settings, checked (ConfigError on a bad one).

    The sweep callback calls it too, before it opens the sweep's parent run.
    """
    sweeper = build(
        "hydra.sweeper", SweeperSettings, {k: v for k, v in raw.items() if not k.startswith("_")}
    )
    if sweeper.storage and (store := local_store_path(sweeper.storage)) is not None:
        allowed = bool(config.get("allow_outside_outputs", False))
        check_inside_outputs(store, "hydra.sweeper.storage", allowed)  # an SQLite file
    block = OmegaConf.to_container(config.search, resolve=True) if "search" in config else {}
    search = build("search", SearchSettings, block or {})
    check_together(search, "flash_kb" in config.target)
    check_latency_metric(search, config.target)
    check_rungs(sweeper, search, _searched(config))
    directions(config.objective if isinstance(config.objective, str) else list(config.objective))
    return sweeper, search


def _searched(config: DictConfig) -> set[str]:
    """The keys the search varies: ``hydra.sweeper.params`` and sweeps on the command line."""
    params = config.hydra.sweeper.get("params")  # None or empty: the space is on the command line
    lines = [f"{k}={v}" for k, v in OmegaConf.to_container(params).items()] if params else []
    lines += list(config.hydra.overrides.get("task") or [])
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # the space's own check names a malformed one
        return set()
    return {o.get_key_element() for o in parsed if o.is_sweep_override()}


def _storage(settings: SweeperSettings, sweep_dir: Path) -> Any:
    if settings.storage:
        return settings.storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))


def _counted(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that used up budget (each ran one job): finished, not replaced after an
    interruption, and not a repeat of an earlier trial's knobs."""
    done = (TrialState.COMPLETE, TrialState.FAIL)
    spent = [t for t in study.trials if t.state in done]
    return [t for t in spent if not {"interrupted", "duplicate_of", REFUSED} & set(t.user_attrs)]


def _earlier(study: optuna.Study, trial: Trial) -> FrozenTrial | None:
    """A finished trial with the same knobs: its job would only be skipped."""
    for old in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if old.params == trial.params and not old.user_attrs.get("interrupted"):
            return old
    return None


MAX_REPEATS = 50  # proposals in a row that repeat earlier trials: the space is used up


class Search:
    """What ``hydra/sweeper=search`` runs (see ``hydra_plugins/sweep_search``)."""

    def __init__(self, params: Any = None, **settings: Any) -> None:
        self.params = params
        self.raw = settings

    # Hydra calls setup() after the sweep callback opened the parent run.
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.tracker = Tracker(
            config.tracking.uri, config.tracking.experiment, bool(config.allow_outside_outputs)
        )
        self._checked(lambda: self._check(config))
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def _check(self, config: DictConfig) -> None:
        self.settings, self.search = check_settings(self.raw, config)
        self.target = str(config.target.get("name", "host"))
        objective = config.objective  # a name, or a list resolved against the whole config
        self.objective = objective if isinstance(objective, str) else list(objective)
        self.directions = directions(self.objective)
        self.rung_epochs = rungs_in_use(self.settings.rung_epochs, int(config.train.epochs))

    def _checked(self, step) -> Any:
        """A bad setting: one line, the parent run marked FAILED, exit 2, no job launched
        (the project's one convention, :mod:`sweep.errors`)."""
        with exits_on_error(lambda line: log.error("%s", line), log, self._fail_parent):
            return step()

    def _fail_parent(self, error: BaseException) -> None:
        """A sweep stopped by a bad setting before any job leaves its parent run FAILED."""
        if not isinstance(error, ConfigError):
            return
        parent = self.tracker.find_parent(sweep_id_for(self.sweep_dir))
        if parent is not None and not self.tracker.children(parent.info.run_id):
            self.tracker.fail(parent.info.run_id, error)

    def sweep(self, arguments: list[str]) -> None:
        space = self._checked(lambda: parse_space(self.params, arguments))
        reference = self._checked(
            lambda: reference_params(space, self.config) if self.search.reference else None
        )
        self.sweep_id = sweep_id_for(self.sweep_dir)
        parent = self.tracker.find_parent(self.sweep_id)
        self.parent_id = parent.info.run_id if parent else None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=self.settings.study_name,
            storage=_storage(self.settings, self.sweep_dir),
            sampler=_sampler(self.settings),
            directions=self.directions,
            load_if_exists=True,
        )
        if study.trials:
            study.sampler = _sampler(self.settings, len(study.trials))
        self.reference = reference
        self._recover(study, reference, space)
        log.info(
            "search: %s sampler (seed %d), %d of %d trials done, %d knobs; %s; study %s",
            self.settings.sampler,
            self.settings.seed,
            len(_counted(study)),
            self.settings.n_trials,
            len(space.distributions),
            f"rung 0 trains {self.rung_epochs} of {self.config.train.epochs} epochs"
            if self.rung_epochs
            else "every trial trains its whole schedule",
            self.settings.storage or self.sweep_dir / "study.journal",
        )
        started, repeats, self.failures_in_a_row = time.monotonic(), 0, 0
        while (left := self.settings.n_trials - len(_counted(study))) > 0:
            minutes = (time.monotonic() - started) / 60
            if self.settings.timeout_minutes and minutes >= self.settings.timeout_minutes:
                log.info("search: %.1f min reached the time budget, %d trials left", minutes, left)
                break
            batch = []
            while len(batch) < min(self.settings.n_jobs, left) and repeats < MAX_REPEATS:
                trial = self._next(study, space)
                if trial is None:  # a queued trial outside the space, refused
                    continue
                if (old := _earlier(study, trial)) is None:
                    batch.append(trial)
                    repeats = 0
                else:
                    self._repeat(study, trial, old)
                    repeats += 1
            if not batch:
                log.info("search: %d proposals in a row repeated earlier trials; stopping", repeats)
                break
            batch.sort(key=lambda t: t.user_attrs.get(ROLE) != "reference")
            if not self._run_batch(study, space, batch):
                break
        study_report.publish(study, self, space)

    def _allowed(self, space: Space | None, params: dict[str, Any], role: str | None) -> list[str]:
        """Why a journal's trial must not run (empty: it may): its parameters outside the
        space, unless they are exactly the config's own reference trial."""
        if space is None or (role == "reference" and params == getattr(self, "reference", None)):
            return []
        return space.outside(params)

    def _refuse(self, study: optuna.Study, trial: Trial, outside: list[str]) -> None:
        reason = "outside the declared search space: " + ", ".join(outside)
        trial.set_user_attr(REFUSED, reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("search: trial %d from the study journal refused, not run: %s",
                    trial.number, reason)  # fmt: skip

    def _next(self, study: optuna.Study, space: Space) -> Trial | None:
        """The next trial: the first queued one (Optuna runs it first) if its parameters are
        allowed, else None after refusing it; a new proposal when none is queued."""
        queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if queued:
            fixed = dict(queued[0].system_attrs.get("fixed_params", {}))
            outside = self._allowed(space, fixed, queued[0].user_attrs.get(ROLE))
            if outside:
                self._refuse(study, study.ask(), outside)  # pops that one, suggests nothing
                return None
        return study.ask(space.distributions)

    def _recover(
        self, study: optuna.Study, reference: dict[str, Any] | None, space: Space | None = None
    ) -> None:
        """Trials a killed run left RUNNING: failed as ``interrupted`` and queued again, or
        failed for good when the same knobs already ended a process once, or refused when
        their knobs lie outside the space."""
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale = sorted(stale, key=lambda t: t.user_attrs.get(ROLE) != "reference")
        crashed = 0
        for old in stale:
            if outside := self._allowed(space, dict(old.params), old.user_attrs.get(ROLE)):
                self._refuse(study, Trial(study, old._trial_id), outside)
                crashed += 1
                continue
            # The same knobs interrupted before: the job itself kills the process (a native
            # crash in a runtime, say). Fail it for good instead of crashing every resume.
            again = any(
                t.user_attrs.get("interrupted")
                and t.params == old.params
                and t.number != old.number
                for t in study.trials
            )
            reason = (
                "failed: the process ended twice while running these knobs (a crash?)"
                if again
                else "interrupted: queued again as a new trial"
            )
            run = trial_runs.find_run(self.tracker, self.sweep_id, trial_runs.job_of(old), None, [])
            if run is not None:
                role = "crashed" if again else "interrupted"
                trial_runs.mark(self.tracker, run.info.run_id, old.number, role, None,
                             {"search.reason": reason})  # fmt: skip
            trial = Trial(study, old._trial_id)
            crashed += again
            if again:
                trial.set_user_attr("failed", reason)
            else:
                trial.set_user_attr("interrupted", True)
            study.tell(old.number, state=TrialState.FAIL)
            if not again:
                role = old.user_attrs.get(ROLE, "trial")
                study.enqueue_trial(old.params, user_attrs={ROLE: role})
        if stale:
            log.info(
                "search: %d interrupted trial(s) queued again, %d failed for good",
                len(stale) - crashed,
                crashed,
            )
        known = [t for t in study.trials if t.user_attrs.get(ROLE) == "reference"]
        if reference is not None and not known:
            study.enqueue_trial(reference, user_attrs={ROLE: "reference"})

    def _repeat(self, study: optuna.Study, trial: Trial, old: FrozenTrial) -> None:
        """Tell the sampler what the earlier trial with these knobs gave, without a job."""
        trial.set_user_attr("duplicate_of", old.number)
        if old.state != TrialState.COMPLETE:
            study.tell(trial, state=TrialState.FAIL)
            return
        for name, bound in old.constraints.items():
            trial.set_constraint(name, bound)
        study.tell(trial, old.values)

    def reference_accuracy(self, study: optuna.Study) -> float | None:
        return study.user_attrs.get("reference_accuracy")

    def _run_batch(self, study: optuna.Study, space: Space, batch: list[Trial]) -> bool:
        if self.rung_epochs is not None:  # multi-fidelity: sweep.search.fidelity
            return fidelity.run_batch(self, study, space, batch)
        overrides = [space.overrides(t.params) for t in batch]
        returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
        go_on = True
        for trial, ret, knobs in zip(batch, returns, overrides, strict=True):
            role = trial.user_attrs.get(ROLE, "trial")
            go_on &= self._go_on(self._tell(study, trial, ret, knobs, role), role)
        return go_on

    def _go_on(self, told: bool, role: str) -> bool:
        """Count a trial's outcome; False when the search must stop (the reference failed,
        or too many trials in a row failed: the setup, not a trial, is broken)."""
        if told:
            self.failures_in_a_row = 0
            return True
        self.failures_in_a_row += 1
        if role == "reference":
            log.error("search: the reference trial failed; no constraint to search with")
            return False
        if self.failures_in_a_row >= self.settings.max_failures_in_a_row:
            log.error(
                "search: %d trials in a row failed; stopping (see their errors above)",
                self.failures_in_a_row,
            )
            return False
        return True

    def _tell(
        self, study: optuna.Study, trial: Trial, ret: JobReturn, knobs: list[str], role: str
    ) -> bool:
        run, values = self.measured(trial, ret, knobs)
        if run is None or values is None:
            self.fail_trial(study, trial, ret, run, role)
            return False
        metrics = dict(run.data.metrics)
        if role == "reference":
            study.set_user_attr("reference_accuracy", metrics["tflite_accuracy"])
            study.set_user_attr("reference_run", run.info.run_id)
        verdict = constraints.judge(
            metrics, self.search, self.reference_accuracy(study), self.target,
            run.data.tags.get("mcu_reason", ""),
        )  # fmt: skip
        for name, bound in verdict.constraints.items():
            trial.set_constraint(name, bound)
        trial.set_user_attr("run_id", run.info.run_id)
        trial.set_user_attr("feasible", verdict.feasible)
        trial.set_user_attr("reason", verdict.reason)
        study.tell(trial, values)
        trial_runs.mark(self.tracker, run.info.run_id, trial.number, role, verdict)
        log.info(
            "search: trial %d%s %s → %s: %s",
            trial.number,
            " (reference)" if role == "reference" else "",
            " ".join(f"{k}={v}" for k, v in trial.params.items()),
            ", ".join(f"{v:g}" for v in values),
            verdict.reason,
        )
        return True

    def measured(self, trial: Trial, ret: JobReturn, knobs: list[str]):
        """The trial's latest job: its MLflow run and objective values (None: it failed)."""
        value = ret._return_value if ret.status == JobStatus.COMPLETED else None
        job = trial_runs.job_of(trial)
        run = trial_runs.find_run(self.tracker, self.sweep_id, job, self.parent_id, knobs)
        values = None
        if value is not None:
            values = [float(v) for v in (value if isinstance(value, tuple | list) else [value])]
        if values is not None and len(values) != len(self.directions):
            values = None
        if values is None and run is not None and ret.status == JobStatus.COMPLETED:
            values = self._off_the_board(dict(run.data.metrics))
        return run, values

    def _off_the_board(self, metrics: dict[str, float]) -> list[float] | None:
        """Values for a model the board cannot run or hold: nothing is built for it, so it
        has no board figures (``mcu_est_latency_ms``); its missing objectives get the worst
        value, and the target's constraints, not a failure, rule it out."""
        if metrics.get("mcu_runs", 1.0) >= 1 and metrics.get("fits_target", 1.0) >= 1:
            return None
        names = [self.objective] if isinstance(self.objective, str) else list(self.objective)
        worst = {"minimize": math.inf, "maximize": -math.inf}
        pairs = zip(names, self.directions, strict=True)
        return [float(metrics.get(name, worst[direction])) for name, direction in pairs]

    def fail_trial(self, study: optuna.Study, trial: Trial, ret: JobReturn, run, role: str) -> None:
        """A trial whose job failed: told FAIL, its run (if any) tagged with the reason."""
        reason = self._failure(trial_runs.job_of(trial), run, ret)
        trial.set_user_attr("failed", reason)
        if run is not None:
            trial.set_user_attr("run_id", run.info.run_id)
            trial_runs.mark(self.tracker, run.info.run_id, trial.number, role, None,
                         {"search.reason": f"failed: {reason}"})  # fmt: skip
        study.tell(trial, state=TrialState.FAIL)
        log.warning("search: trial %d failed: %s", trial.number, reason)

    def _failure(self, job: int, run, ret: JobReturn) -> str:
        if run is not None and run.data.tags.get("error"):
            return run.data.tags["error"].splitlines()[-1]
        invalid = self.sweep_dir / str(job) / INVALID_JOB_FILE
        if invalid.exists():
            return invalid.read_text().strip()
        if ret.status != JobStatus.COMPLETED:
            return f"the job raised: {ret._return_value!r}"
        names = [self.objective] if isinstance(self.objective, str) else list(self.objective)
        recorded = run.data.metrics if run is not None else {}
        missing = ", ".join(name for name in names if name not in recorded) or "an objective"
        why = run.data.tags.get("mcu_emulation_reason") if run is not None else None
        return f"the job recorded no {missing}" + (f"; no board figures: {why}" if why else "")
