"""Ctrl-C during a sweep: one line, exit status 130, and nothing left RUNNING in the store.

Hydra ends a multirun on KeyboardInterrupt with its traceback, and no callback hears of it:
the parent run stayed RUNNING (in the MLflow UI, a sweep that never ends), and so did a job
that another process (a joblib worker) was running when it was stopped, until the same
command ran again. The sweepers (``hydra_plugins/sweep_search``) wrap their sweep in
:func:`ends_as_killed`, which records the interruption as a resume would, at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from sweep.cli.sweep_callback import sweep_tracker
from sweep.errors import EXIT_INTERRUPTED, one_line
from sweep.pipeline.context import sweep_id_for

log = logging.getLogger(__name__)


def record_interrupted(config: DictConfig) -> str:
    """Mark the sweep's parent run and the jobs left running under it KILLED; the line
    that says so (or why the store could not be told)."""
    sweep_dir = Path(config.hydra.sweep.dir)
    resume = f"the same command resumes it (hydra.sweep.dir={sweep_dir})"
    try:
        tracker = sweep_tracker(config)
        parent = tracker.find_parent(sweep_id_for(sweep_dir))
        if parent is None:
            return f"interrupted before the sweep's parent run was opened; {resume}"
        parent_id = parent.info.run_id
        stale = tracker.mark_stale(parent_id)
        tracker.fail(parent_id, KeyboardInterrupt("interrupted (Ctrl-C)"))
    except Exception as error:  # the store itself may be what failed: say so, keep 130
        return f"interrupted; the store could not record it ({one_line(error)}); {resume}"
    jobs = f" and {stale} running job(s)" if stale else ""
    return f"interrupted: parent run {parent_id}{jobs} marked KILLED; {resume}"


@contextlib.contextmanager
def ends_as_killed(config: DictConfig) -> Iterator[None]:
    """Run a sweep; on Ctrl-C record it (:func:`record_interrupted`), say so in one line and
    exit with status 130 instead of Hydra's traceback."""
    try:
        yield
    except KeyboardInterrupt:
        log.error("%s", record_interrupted(config))
        raise SystemExit(EXIT_INTERRUPTED) from None
