"""``python -m sweep``: the Hydra entry point around ``sweep.pipeline.job.run``.

A single run ends by the project's one convention (:mod:`sweep.errors`): a user
error is one line and exit status 2, a bug a traceback and exit status 1. In a
multirun a failing job is recorded (a FAILED MLflow run) and the sweep goes on:
Hydra would otherwise skip the end-of-sweep ranking. The ranking step then reports
the failures and sets the exit status.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sweep.errors import UserError, exits_on_error, one_line
from sweep.groups import target_defaults
from sweep.pipeline.context import INVALID_JOB_FILE, current
from sweep.stores.paths import (
    browse_hint,
    check_store_reachable,
    register_resolvers,
    resolve_tracking_uri,
)

log = logging.getLogger("sweep")

register_resolvers()
target_defaults.register_resolvers()  # ${sweep_latency_metric:${target}} (board_search.yaml)


def _objective(
    metrics: dict[str, float], objective: str | Sequence[str]
) -> float | tuple[float, ...] | None:
    """The value(s) a sweeper optimizes, or None when the job has none to give.

    None, not NaN: Optuna records a None trial as failed and goes on, while a
    NaN stops the whole study before the end-of-sweep ranking.
    """
    names = [objective] if isinstance(objective, str) else list(objective)
    values = tuple(metrics.get(name, math.nan) for name in names)
    if any(math.isnan(value) for value in values):
        return None
    return values[0] if len(values) == 1 else values


def _run(cfg: DictConfig, out_dir: Path, in_sweep: bool):  # -> sweep.pipeline.job.Outcome
    if not in_sweep:  # an unreachable store fails before TensorFlow takes seconds to load
        check_store_reachable(resolve_tracking_uri(cfg.tracking.uri))
    from sweep.pipeline.job import run  # imports TensorFlow: after Hydra parsed the command line

    return run(cfg, out_dir=out_dir)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | tuple[float, ...] | None:
    in_sweep = current().sweep_id is not None
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if not in_sweep:  # one line and exit 2 for the user's mistakes, a traceback for bugs
        with exits_on_error(lambda line: log.error("%s", line)):
            outcome = _run(cfg, out_dir, in_sweep)
        uri = resolve_tracking_uri(cfg.tracking.uri)
        log.info("files in %s; MLflow run %s: %s", out_dir, outcome.run_id, browse_hint(uri))
        return _objective(outcome.metrics, cfg.objective)
    try:  # in a sweep, a job's failure is recorded and the sweep goes on
        outcome = _run(cfg, out_dir, in_sweep)
    except UserError as error:
        log.error("%s", one_line(error))
        if not hasattr(error, "recorded_run_id"):  # no run: leave it where the ranking looks
            (out_dir / INVALID_JOB_FILE).write_text(str(error))
        return _objective({}, cfg.objective)
    except Exception:
        log.exception("job failed; the sweep goes on (see the ranking for all failures)")
        return _objective({}, cfg.objective)
    return _objective(outcome.metrics, cfg.objective)


if __name__ == "__main__":
    main()
