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
from sweep.pipeline.context import sweep_id_for
from sweep.ranking.report import rank_sweep
from sweep.run_settings import RankSettings
from sweep.search.search_settings import rungs_in_use
from sweep.settings import ConfigError, build
from sweep.stores import memos
from sweep.stores.paths import browse_hint
from sweep.stores.tracking import ROLE, SWEEP_ID, TOTAL_JOBS, Tracker, flatten

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
    the same job folders. The lock ends with the process, however it ends.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    handle = (sweep_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
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
    """A Ray instance started for this sweep listens on 127.0.0.1 only.

    Ray 2.60 binds the machine's address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0;
    Hydra's Ray launcher imports Ray and calls ``ray.init`` only after this callback
    (and Ray reads the variable when imported, and its daemons inherit it). A value
    the user set is kept.
    """
    ray = config.hydra.launcher.get("ray")
    choice = config.hydra.runtime.choices.get("hydra/launcher")
    local = ray is not None and ray.get("init", {}).get("address") == "local"
    if not (local or choice == "ray_local") or RAY_LOOPBACK_ENV in os.environ:
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


def _is_dataset_key(key: str) -> bool:
    key = key.lstrip("+~")
    return key == "dataset" or key.startswith("dataset.")


def dataset_variants(config: DictConfig) -> list[list[str]]:
    """Overrides composing each dataset option the sweep will use (its other sweeps left out).

    Values a search draws from a range (Optuna's ``interval``) cannot be listed:
    such a key keeps its base value here, and each job checks its own.
    """
    parser = OverridesParser.create()
    grid = parser.parse_overrides([f"{k}={v}" for k, v in sweep_grid(config).items()])
    task = parser.parse_overrides(list(config.hydra.overrides.task))
    hydra = parser.parse_overrides(list(config.hydra.overrides.hydra))  # hydra.searchpath, ...
    fixed = {o.get_key_element(): o.input_line for o in hydra if not o.is_sweep_override()}
    swept: dict[str, list[str]] = {}
    for override in [*grid, *task]:  # the command line wins over the experiment's grid
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed[key] = override.input_line
            swept.pop(key, None)
        elif _is_dataset_key(key) and not override.is_interval_sweep():
            values = list(override.sweep_string_iterator())
            swept[key] = [f"{key}={value}" for value in values]
            fixed.pop(key, None)
    base = list(fixed.values())
    return [[*base, *choice] for choice in itertools.product(*swept.values())]


def check_sweep_data(config: DictConfig) -> int:
    """Read every dataset the sweep's jobs will read; a DataError stops the sweep here
    (one line, exit 2, no run opened).

    A wrong ``dataset.path`` or a truncated file would otherwise open (and fail)
    one MLflow run per job. Returns how many distinct datasets were read.
    """
    from hydra import compose

    from sweep.pipeline.components import instantiate_group

    seen: set[str] = set()
    for overrides in dataset_variants(config):
        try:
            node = compose(config.hydra.job.config_name, overrides=overrides).dataset
            key = json.dumps(OmegaConf.to_container(node, resolve=True), sort_keys=True)
            source = None if key in seen else instantiate_group("dataset", node)[0]
        except Exception as error:  # a bad setting of some jobs only: those jobs report it
            log.debug("dataset of %s not checked before the sweep: %s", overrides, error)
            continue
        seen.add(key)
        if source is not None:
            source.load()  # DataError: the caller stops the sweep (exit 2)
    return len(seen)


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


def check_before_the_first_job(config: DictConfig) -> None:
    """What every job shares, checked before anything is recorded: the options named, the
    settings, a search's settings, and the data of every dataset option (DataError and
    ConfigError are one line and exit 2)."""
    from sweep.pipeline.components import instantiate_components

    check_group_options(config)
    instantiate_components(config)  # settings every job shares: fail before the first job
    _check_search(config)
    log.info("data of %d dataset option(s) checked", check_sweep_data(config))


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
            tags={"sweep.overrides": " ".join(config.hydra.overrides.task)},
        )
    tracker.log(parent_id, tags={TOTAL_JOBS: str(total or "?")})
    return parent_id


class SweepCallback(Callback):
    """Parent run at the start (or the existing one, to resume), ranking at the end."""

    def __init__(self) -> None:
        self._folder_lock: IO[str] | None = None

    def _tracker(self, config: DictConfig) -> Tracker:
        return Tracker(config.tracking.uri, config.tracking.experiment)

    @_exit_on_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        memos.reset()  # a new sweep: nothing a memo of this process holds is known true
        check_before_the_first_job(config)
        sweep_dir = config.hydra.sweep.dir
        self._folder_lock = hold_sweep_folder(Path(sweep_dir))
        keep_local_ray_on_loopback(config)
        tracker = self._tracker(config)
        _warn_many_writers(config, tracker.uri)
        total = count_jobs(config)
        parent_id = open_parent_run(config, tracker, sweep_id_for(sweep_dir), total)
        log.info(
            "sweep of %s jobs into %s; MLflow: %s (parent run %s)",
            total or "?",
            sweep_dir,
            tracker.uri,
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
        tracker = self._tracker(config)
        parent = tracker.find_parent(sweep_id_for(sweep_dir))
        if parent is None:
            log.error("no parent run for %s in %s: nothing to rank", sweep_dir, tracker.uri)
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
