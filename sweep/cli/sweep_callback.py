"""Hydra callback: open the sweep's parent run, and rank the sweep when it ends.

Hydra skips ``on_multirun_end`` when a job raises, so jobs record their own
failures and never raise in a multirun (see ``sweep.__main__``); this callback
then decides the exit status.

Before the first job it checks what every job shares, so a mistake stops the
sweep with one line and nothing recorded: the settings, the data of every
dataset option the sweep uses, the tracking store, and that no other sweep runs
in the same folder (a lock held for the sweep's whole life).
"""

from __future__ import annotations

import copy
import fcntl
import functools
import itertools
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.errors import exits_on_error
from sweep.groups import GROUPS
from sweep.pipeline.context import FIXED_SETTINGS_TAG, knob_settings, sweep_id_for
from sweep.ranking.report import rank_sweep
from sweep.redact import redact_logs
from sweep.run_settings import RankSettings
from sweep.search.search_settings import rungs_in_use
from sweep.settings import ConfigError, build
from sweep.stores import memos
from sweep.stores.paths import browse_hint
from sweep.stores.tracking import ROLE, SWEEP_ID, TOTAL_JOBS, Tracker, flatten
from sweep.stores.untrusted import Refused, open_lock

log = logging.getLogger("sweep")

LOCK_FILE = ".sweep.lock"
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a one-machine Ray, on 127.0.0.1
SQLITE_WRITERS = 8  # parallel jobs checked against one SQLite store (tests/test_hardening.py)


def sweep_grid(config: DictConfig) -> dict[str, str]:
    """The grid an experiment declares under ``hydra.sweeper.params`` (may be empty)."""
    params = config.hydra.sweeper.get("params")
    return {} if params is None else OmegaConf.to_container(params, resolve=False)


def count_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweeper will launch (None when a search decides, e.g. Optuna)."""
    sweeper = config.hydra.sweeper
    if rungs_in_use(sweeper.get("rung_epochs"), int(config.train.get("epochs", 0))):
        return None  # a search with rungs: a trial runs one job or two
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    overrides = [f"{k}={v}" for k, v in sweep_grid(config).items()]
    overrides += list(config.hydra.overrides.task)
    sizes: dict[str, int] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            sizes[override.get_key_element()] = len(list(override.sweep_string_iterator()))
        else:
            sizes[override.get_key_element()] = 1
    return math.prod(sizes.values())


def hold_sweep_folder(sweep_dir: Path) -> IO[str]:
    """Lock the sweep folder for this process, or refuse: two sweeps must never share one.

    They would share the parent run, mark each other's live runs KILLED and write
    the same job folders. The lock ends with the process, however it ends. A lock
    file that is a link or has other names is refused, never written through: it
    would truncate the file it points to.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / LOCK_FILE
    try:
        fd = open_lock(path)
    except Refused as why:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir}: {why}; a sweep's lock is a plain file: remove it "
            "(its target is left untouched), or give this sweep another hydra.sweep.dir."
        ) from None
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read(64).strip() or "?"
        handle.close()
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} is in use by another sweep (process {holder}): "
            "wait for it to end, or give this sweep another hydra.sweep.dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def keep_local_ray_on_loopback(config: DictConfig) -> None:
    """A Ray instance started for this sweep listens on 127.0.0.1 only: ``ray_local``'s, and
    the one Hydra's stock ``hydra/launcher=ray`` (``address: null``) starts.

    Ray 2.60 binds the machine's address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0;
    Hydra's Ray launcher imports Ray and calls ``ray.init`` only after this callback
    (and Ray reads the variable when imported, and its daemons inherit it). A value
    the user set is kept.
    """
    ray = config.hydra.launcher.get("ray")
    if ray is None or RAY_LOOPBACK_ENV in os.environ:
        return
    address = ray.get("init", {}).get("address")
    # "local": always a new instance; null (Hydra's stock hydra/launcher=ray): a new one
    # unless RAY_ADDRESS names a cluster to join.
    if not (address == "local" or (address is None and "RAY_ADDRESS" not in os.environ)):
        return
    os.environ[RAY_LOOPBACK_ENV] = "0"
    if (constants := sys.modules.get("ray._private.ray_constants")) is not None:
        constants.ENABLE_RAY_CLUSTER = False  # Ray was imported before: read too early
    log.info("Ray stays on 127.0.0.1 (%s=0)", RAY_LOOPBACK_ENV)


def check_group_options(config: DictConfig) -> None:
    """Every option the sweep names exists, so a typo stops it before its parent run opens.

    Hydra itself would find ``quantize=none,int4`` only after the sweep had started
    (leaving a parent run with no children, still RUNNING).
    """
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    search_path = [o for o in config.hydra.overrides.hydra if o.startswith("hydra.searchpath")]
    parser = OverridesParser.create()
    grid = [f"{k}={v}" for k, v in sweep_grid(config).items()]
    for override in parser.parse_overrides([*grid, *config.hydra.overrides.task]):
        group = override.key_or_group.lstrip("+~")
        options = loader.get_group_options(
            group, config_name=config.hydra.job.config_name, overrides=search_path
        )
        options = [o for o in options if not o.startswith("_")]  # bases that options compose
        if not options or override.is_delete() or override.is_interval_sweep():
            continue
        values = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [str(override.value())]
        )
        for value in values:
            if value not in options:
                raise ConfigError(
                    f"{group}={value} is not an option of {group}: "
                    f"expected one of {', '.join(options)}"
                )


def _in_groups(*groups: str) -> Callable[[str], bool]:
    """Whether an override chooses or sets one of ``groups`` (``dataset=``, ``dataset.x=``)."""

    def matches(key: str) -> bool:
        key = key.lstrip("+~")
        return any(key == group or key.startswith(f"{group}.") for group in groups)

    return matches


def sweep_overrides(config: DictConfig) -> tuple[dict[str, str], dict[str, list[str] | None]]:
    """The sweep's overrides (Hydra's, the experiment's grid, the command line, which wins):
    those every job gets, by key, and each swept key's overrides (None for a range a search
    draws from, which cannot be listed)."""
    parser = OverridesParser.create()
    grid = parser.parse_overrides([f"{k}={v}" for k, v in sweep_grid(config).items()])
    task = parser.parse_overrides(list(config.hydra.overrides.task))
    hydra = parser.parse_overrides(list(config.hydra.overrides.hydra))  # hydra.searchpath, ...
    fixed = {o.get_key_element(): o.input_line for o in hydra if not o.is_sweep_override()}
    swept: dict[str, list[str] | None] = {}
    for override in [*grid, *task]:  # the command line wins over the experiment's grid
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed[key] = override.input_line
            swept.pop(key, None)
        else:
            fixed.pop(key, None)
            values = None if override.is_interval_sweep() else override.sweep_string_iterator()
            swept[key] = None if values is None else [f"{key}={value}" for value in values]
    return fixed, swept


def variants(config: DictConfig, keys: Callable[[str], bool]) -> list[list[str]]:
    """Overrides composing each combination of the values the sweep gives to ``keys``
    (its other sweeps left out; a key a search draws from a range keeps its base value
    here, and each job checks its own)."""
    fixed, swept = sweep_overrides(config)
    chosen = [values for key, values in swept.items() if keys(key) and values is not None]
    return [[*fixed.values(), *choice] for choice in itertools.product(*chosen)]


class VariantComposer:
    """Job configs of a sweep's variants, one Hydra compose per choice of group options.

    A compose re-reads every YAML file (~0.16 CPU s): the board search's 24 combinations of
    model knobs took 3.9 CPU s before its first trial, 0.4 now (benchmarks/data_check_cost.py).
    Overrides of a setting (``model.blocks=2``)
    are applied to a copy of the composed config by Hydra's own code, as a compose applies
    them once the defaults are merged; the overrides choosing an option (``model=cnn``)
    and those outside the sweep's groups go to the compose.
    """

    def __init__(self, config_name: str) -> None:
        self._config_name = config_name
        self._parser = OverridesParser.create()
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def compose(self, overrides: list[str]) -> DictConfig:
        from hydra import compose
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        settings, chosen = [], []
        for override in self._parser.parse_overrides(overrides):
            is_setting = "." in override.key_or_group and not override.is_hydra_override()
            (settings if is_setting else chosen).append(override)
        key = tuple(o.input_line for o in chosen)
        if key not in self._composed:
            self._composed[key] = compose(self._config_name, overrides=list(key))
        job = copy.deepcopy(self._composed[key])
        ConfigLoaderImpl._apply_overrides_to_config(settings, job)
        return job


def fixed_settings(config: DictConfig) -> str:
    """The settings every job of the sweep gets, as ``knob_settings`` writes a job's own
    (the sweepers hand each job its overrides rendered by Hydra: ``target.emulate=False``
    for a command line's ``target.emulate=false``)."""
    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides(config)[0].values()))
    rendered = [
        o.input_line if o.is_delete() else f"{o.get_key_element()}={o.get_value_element_as_str()}"
        for o in parsed
    ]
    return knob_settings(rendered, GROUPS, seed=True)


def check_sweep_data(config: DictConfig) -> int:
    """Read every dataset the sweep's jobs will read, and check that each model they build
    takes it; a UserError stops the sweep here (one line, exit 2, no run opened).

    A wrong ``dataset.path``, a truncated file, or a model file that is refused or does
    not fit the data would otherwise open (and fail) one MLflow run per job. Returns how
    many distinct datasets were read.
    """
    from sweep.pipeline.components import instantiate_group
    from sweep.pipeline.sequence import fit_data_to_model

    read: dict[str, Any] = {}
    composer = VariantComposer(config.hydra.job.config_name)
    # Whether a model takes the data depends on the dataset, the model and train=none.
    for overrides in variants(config, _in_groups("dataset", "model", "train")):
        try:
            job = composer.compose(overrides)
            key = json.dumps(OmegaConf.to_container(job.dataset, resolve=True), sort_keys=True)
            source = None if key in read else instantiate_group("dataset", job.dataset)[0]
            model = instantiate_group("model", job.model)[0]
            train = instantiate_group("train", job.train)[0]
        except Exception as error:  # a bad setting of some jobs only: those jobs report it
            log.debug("data of %s not checked before the sweep: %s", overrides, error)
            continue
        if source is not None:
            read[key] = source.load()  # DataError: the caller stops the sweep (exit 2)
        fit_data_to_model(model, train, read[key])  # UserError: likewise
    return len(read)


def _warn_many_writers(config: DictConfig, uri: str) -> None:
    n_jobs = config.hydra.launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or not uri.lower().startswith("sqlite"):
        return
    parallel = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
    if parallel > SQLITE_WRITERS:
        log.warning(
            "hydra.launcher.n_jobs=%d: more than %d jobs writing one SQLite store at once is "
            "untested; for more, run a tracking server (tracking.uri=http://...).",
            n_jobs,
            SQLITE_WRITERS,
        )


def _check_search(config: DictConfig) -> None:
    """A search's own settings, checked before the sweep's parent run is opened."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("SearchSweeper"):
        return
    from sweep.search.sweeper import check_settings

    raw = OmegaConf.to_container(sweeper, resolve=True)
    raw.pop("params", None)
    check_settings(raw, config)


def _exit_on_error(hook: Callable[..., None]) -> Callable[..., None]:
    """Hydra turns a callback's exception into a mere warning; a sweep must stop instead,
    by the project's one convention (:mod:`sweep.errors`): a user error is one line and
    exit 2, anything else its traceback and exit 1."""

    @functools.wraps(hook)
    def guarded(self: Callback, config: DictConfig, **kwargs: Any) -> None:
        with exits_on_error(lambda line: log.error("%s", line), log):
            hook(self, config, **kwargs)

    return guarded


def sweep_tracker(config: DictConfig) -> Tracker:
    """The store the sweep's runs go to, as its settings name it."""
    return Tracker(
        config.tracking.uri, config.tracking.experiment, bool(config.allow_outside_outputs)
    )


def check_before_the_first_job(config: DictConfig) -> None:
    """What every job shares, checked before anything is recorded: the options named, the
    settings, a search's settings, the data of every dataset option, and that each model
    takes it (DataError, ConfigError and ModelFileError are one line and exit 2)."""
    from sweep.pipeline.components import instantiate_components

    check_group_options(config)
    instantiate_components(config)  # settings every job shares: fail before the first job
    _check_search(config)
    log.info(
        "data of %d dataset option(s) and the models taking it checked", check_sweep_data(config)
    )


def open_parent_run(config: DictConfig, tracker: Tracker, sweep_id: str, total: int | None) -> str:
    """The sweep's parent run: the one a killed sweep left (resumed, its stale children
    marked KILLED), or a new one holding the grid and the command line."""
    sweep_dir = config.hydra.sweep.dir
    parent = tracker.find_parent(sweep_id)
    if parent is not None:
        parent_id = parent.info.run_id
        stale = tracker.mark_stale(parent_id)
        tracker.client.update_run(parent_id, status="RUNNING")
        log.info(
            "resuming sweep %s (run %s): %d interrupted run(s) marked KILLED",
            sweep_dir,
            parent_id,
            stale,
        )
    else:
        name = f"sweep {Path(sweep_dir).name}"
        parent_id = tracker.start_run(
            name, {ROLE: "parent", SWEEP_ID: sweep_id, "sweep.dir": sweep_id}
        )
        tracker.log(
            parent_id,
            params=flatten(sweep_grid(config), "grid."),
            tags={
                "sweep.overrides": " ".join(config.hydra.overrides.task),
                FIXED_SETTINGS_TAG: fixed_settings(config),
            },
        )
    tracker.log(parent_id, tags={TOTAL_JOBS: str(total or "?")})
    return parent_id


class SweepCallback(Callback):
    """Parent run at the start (or the existing one, to resume), ranking at the end."""

    def __init__(self) -> None:
        self._folder_lock: IO[str] | None = None

    @_exit_on_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        redact_logs()  # Hydra's launcher logs each job's overrides: tracking.uri's password
        memos.reset()  # a new sweep: nothing a memo of this process holds is known true
        check_before_the_first_job(config)
        sweep_dir = config.hydra.sweep.dir
        self._folder_lock = hold_sweep_folder(Path(sweep_dir))
        keep_local_ray_on_loopback(config)
        tracker = sweep_tracker(config)
        _warn_many_writers(config, tracker.uri)
        total = count_jobs(config)
        parent_id = open_parent_run(config, tracker, sweep_id_for(sweep_dir), total)
        log.info(
            "sweep of %s jobs into %s; MLflow: %s (parent run %s)",
            total or "?",
            sweep_dir,
            tracker.shown_uri,
            parent_id,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._rank(config)
        finally:
            if self._folder_lock is not None:
                self._folder_lock.close()  # releases the sweep folder
                self._folder_lock = None

    @_exit_on_error
    def _rank(self, config: DictConfig) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        tracker = sweep_tracker(config)
        parent = tracker.find_parent(sweep_id_for(sweep_dir))
        if parent is None:
            log.error("no parent run for %s in %s: nothing to rank", sweep_dir, tracker.shown_uri)
            sys.exit(1)
        parent_id = parent.info.run_id
        settings = build("rank", RankSettings, OmegaConf.to_container(config.rank, resolve=True))
        ranking = rank_sweep(tracker, settings, sweep_dir, parent_id=parent_id, sweep_dir=sweep_dir)
        log.info(
            "browse the sweep (parent run %s): %s",
            parent_id,
            browse_hint(tracker.uri, tracker.experiment_id),
        )
        tracker.finish(parent_id, "FAILED" if ranking.failed else "FINISHED")
        if ranking.failed:
            log.error(
                "%d sequence(s) failed: see %s", len(ranking.failed), sweep_dir / "ranking.md"
            )
            sys.exit(1)
