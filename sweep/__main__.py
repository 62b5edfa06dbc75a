"""``python -m sweep``: the Hydra entry point around ``sweep.job.run``.

In a multirun a failing job is recorded (a FAILED MLflow run) and the sweep goes
on: Hydra would otherwise skip the end-of-sweep ranking. The ranking step then
reports the failures and sets the exit status.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sweep.context import INVALID_JOB_FILE, current
from sweep.paths import (
    browse_hint,
    check_store_reachable,
    register_resolvers,
    resolve_tracking_uri,
)

log = logging.getLogger("sweep")

register_resolvers()


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix: shown as one message, no traceback."""
    from sweep.groups.idx import DataError
    from sweep.settings import ConfigError

    return (ConfigError, DataError)


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | tuple[float, ...] | None:
    in_sweep = current().sweep_id is not None
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if not in_sweep:  # an unreachable store fails before TensorFlow takes seconds to load
            check_store_reachable(resolve_tracking_uri(cfg.tracking.uri))
        from sweep.job import run  # imports TensorFlow: after Hydra has parsed the command line

        outcome = run(cfg, out_dir=out_dir)
    except _user_errors() as error:
        log.error("%s", error)
        if in_sweep:
            if not hasattr(error, "recorded_run_id"):  # no run: leave it where the ranking looks
                (out_dir / INVALID_JOB_FILE).write_text(str(error))
            return _objective({}, cfg.objective)
        sys.exit(2)
    except Exception:
        if not in_sweep:
            raise
        log.exception("job failed; the sweep goes on (see the ranking for all failures)")
        return _objective({}, cfg.objective)
    if not in_sweep:
        uri = resolve_tracking_uri(cfg.tracking.uri)
        log.info("files in %s; MLflow run %s: %s", out_dir, outcome.run_id, browse_hint(uri))
    return _objective(outcome.metrics, cfg.objective)


if __name__ == "__main__":
    main()
