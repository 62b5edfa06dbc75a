"""Hydra callback: open the sweep's parent run, and rank the sweep when it ends.

Hydra skips ``on_multirun_end`` when a job raises, so jobs record their own
failures and never raise in a multirun (see ``sweep.__main__``); this callback
then decides the exit status.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.context import sweep_id_for
from sweep.paths import browse_hint
from sweep.ranking.report import rank_sweep
from sweep.run_settings import RankSettings
from sweep.settings import ConfigError, build
from sweep.tracking import ROLE, SWEEP_ID, TOTAL_JOBS, Tracker, flatten

log = logging.getLogger("sweep")


def sweep_grid(config: DictConfig) -> dict[str, str]:
    """The grid an experiment declares under ``hydra.sweeper.params`` (may be empty)."""
    params = config.hydra.sweeper.get("params")
    return {} if params is None else OmegaConf.to_container(params, resolve=False)


def count_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweeper will launch (None when a search decides, e.g. Optuna)."""
    sweeper = config.hydra.sweeper
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


def _exit_on_error(hook: Callable[..., None]) -> Callable[..., None]:
    """Hydra turns a callback's exception into a mere warning; a sweep must stop instead."""

    @functools.wraps(hook)
    def guarded(self: Callback, config: DictConfig, **kwargs: Any) -> None:
        try:
            hook(self, config, **kwargs)
        except ConfigError as error:
            log.error("%s", error)
            sys.exit(2)
        except Exception:
            log.exception("%s failed", hook.__name__)
            sys.exit(1)

    return guarded


class SweepCallback(Callback):
    """Parent run at the start (or the existing one, to resume), ranking at the end."""

    def _tracker(self, config: DictConfig) -> Tracker:
        return Tracker(config.tracking.uri, config.tracking.experiment)

    @_exit_on_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from sweep.components import instantiate_components

        instantiate_components(config)  # settings every job shares: fail before the first job
        sweep_dir = config.hydra.sweep.dir
        sweep_id = sweep_id_for(sweep_dir)
        tracker = self._tracker(config)
        total = count_jobs(config)
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
        log.info(
            "sweep of %s jobs into %s; MLflow: %s (parent run %s)",
            total or "?",
            sweep_dir,
            tracker.uri,
            parent_id,
        )

    @_exit_on_error
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        tracker = self._tracker(config)
        parent = tracker.find_parent(sweep_id_for(sweep_dir))
        if parent is None:
            log.error("no parent run for %s in %s: nothing to rank", sweep_dir, tracker.uri)
            sys.exit(1)
        parent_id = parent.info.run_id
        settings = build("rank", RankSettings, OmegaConf.to_container(config.rank, resolve=True))
        ranking = rank_sweep(tracker, settings, sweep_dir, parent_id=parent_id, sweep_dir=sweep_dir)
        log.info("browse the sweep (parent run %s): %s", parent_id, browse_hint(tracker.uri))
        tracker.finish(parent_id, "FAILED" if ranking.failed else "FINISHED")
        if ranking.failed:
            log.error(
                "%d sequence(s) failed: see %s", len(ranking.failed), sweep_dir / "ranking.md"
            )
            sys.exit(1)
