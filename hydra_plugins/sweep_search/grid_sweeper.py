"""Hydra's basic grid sweeper, each job's config composed once instead of twice.

Hydra's basic sweeper composes every job's config before launching the batch (so a
bad override stops the sweep before the first job) and the basic launcher composes it
again to run it: ~50 ms each on these machines, ~8 s of a 120-job grid spent composing
configs it already had. Here the first composition is kept and handed to the launcher.
Only for the in-process basic launcher: other launchers ship the context to other
processes, where a store of configs would only add weight.

A grid of several trained models runs them side by side by default: with no launcher
chosen (Hydra's basic one, one job at a time in this process) and more than one worker
allowed (:func:`side_by_side`: ``hydra.sweeper.workers``, null = one per core, at most one
per trained model and per :data:`WORKER_BYTES` of available memory), the sweeper hands the
grid to joblib workers instead. Why: one training keeps about one core busy, so on 2 cores
two workers each training its own model took 0.54-0.68x the wall time of one job at a time
on the 120-job paper grid, with the same figures (benchmarks/README.md).
``hydra.sweeper.workers=1`` keeps one job at a time.

With a parallel launcher (``hydra/launcher=joblib``, ``n_jobs`` > 1) jobs running side by
side must need different trained models: Hydra's product order puts the quantizers of one
trained model next to each other, and the second worker would wait on the stage cache's
lock while the first one trains it. So a grid with at least as many trained models as
workers is dealt out a whole trained model at a time (:meth:`GridSweeper.deal_whole_models`:
joblib's ``batch_size`` = the jobs per model, so one worker trains a model, fine-tunes it
and runs every sequence on it while the other does the same with another); otherwise the
jobs are interleaved (:func:`interleaved`).

It is registered as ``hydra/sweeper=basic``, in place of Hydra's own (which it
subclasses, and this module imports first so ours is the one kept): a primary-config
``override hydra/sweeper: grid`` would silently win over an experiment's own sweeper
(``override /hydra/sweeper: search``), so the default is changed where it is defined.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.sweep_search.grid_sweeper.GridSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045  (OmegaConf reads these types)
    params: Optional[dict[str, str]] = None  # noqa: UP045
    # Jobs side by side, a trained model per worker (null: one per core, :func:`side_by_side`).
    workers: Optional[int] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="basic", node=GridSweeperConf, provider="sweep"
)


class ComposedOnce:
    """A config loader that hands the configs the sweeper validated to the launcher.

    ``compose_and_keep`` composes a job's config and keeps it under its overrides;
    ``load_sweep_config`` gives each kept config out once (to the launcher), and
    composes anything else.
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._kept: dict[tuple[str, ...], list[DictConfig]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def compose_and_keep(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> None:
        composed = self._loader.load_sweep_config(master_config, list(sweep_overrides))
        self._kept.setdefault(tuple(sweep_overrides), []).append(composed)

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: Sequence[str]
    ) -> DictConfig:
        kept = self._kept.get(tuple(sweep_overrides))
        if kept:
            return kept.pop(0)
        return self._loader.load_sweep_config(master_config, list(sweep_overrides))


WORKER_BYTES = 2_500_000_000
"""What one more worker adds to a grid's peak memory: a TensorFlow process with a dataset
and its models (the paper grid: 5.67 GB with two workers beside the sweep's own process,
2.95 GB one job at a time; benchmarks/README.md)."""


def available_bytes() -> int | None:
    """The memory the system can still give (``MemAvailable``); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a container or ``taskset`` may
    give it fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def side_by_side(workers: int | None, models: int, cores: int, memory: int | None) -> int:
    """How many workers run a grid of ``models`` trained models: ``workers`` if set, else one
    per core; never more than there are models (a worker takes whole models), nor than
    ``memory`` (bytes available, None: unknown) holds at :data:`WORKER_BYTES` each."""
    wanted = cores if workers is None else workers
    room = wanted if memory is None else max(1, memory // WORKER_BYTES)
    return max(1, min(wanted, models, room))


STAGE_FREE = ("pretrain", "quantize", "target", "measure", "rank", "tracking", "cache")
"""Groups and blocks whose settings do not change a job's trained model (its train stage)."""


def _train_stage(overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides that decide a job's trained model (all but :data:`STAGE_FREE` ones)."""
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.split(".", 1)[0] not in STAGE_FREE:
            kept.append(override)
    return tuple(kept)


def by_trained_model(batch: Sequence[Sequence[str]]) -> list[list[Sequence[str]]]:
    """The batch's jobs grouped by trained model, groups and jobs in Hydra's order."""
    groups: dict[tuple[str, ...], list[Sequence[str]]] = {}
    for overrides in batch:
        groups.setdefault(_train_stage(overrides), []).append(overrides)
    return list(groups.values())


def jobs_per_model(groups: Sequence[Sequence[Sequence[str]]]) -> int | None:
    """The jobs each trained model has, if every model has as many (a grid's product does)."""
    sizes = {len(group) for group in groups}
    return sizes.pop() if len(sizes) == 1 else None


def interleaved(batch: Sequence[Sequence[str]], parallel: int) -> list[Sequence[str]]:
    """The batch reordered for ``parallel`` workers that take jobs one at a time, in order.

    Each run of ``parallel`` consecutive trained-model groups is dealt out round-robin (A1
    B1 A2 B2 ...), so that side by side the workers train and use different models, and
    groups of the same dataset stay together (a worker keeps one dataset in memory). The
    jobs themselves, and what each measures, do not change; only which job number runs
    which config.
    """
    ordered = by_trained_model(batch)
    out: list[Sequence[str]] = []
    for start in range(0, len(ordered), parallel):
        chunk = ordered[start : start + parallel]
        for i in range(max(len(g) for g in chunk)):
            out += [g[i] for g in chunk if i < len(g)]
    return out


class GridSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: Optional[int] = None,  # noqa: UP045
        params: Optional[dict[str, str]] = None,  # noqa: UP045
        workers: Optional[int] = None,  # noqa: UP045
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self._workers = workers

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self._context, self._task = hydra_context, task_function
        self._composed: Optional[ComposedOnce] = None  # noqa: UP045
        if config.hydra.launcher.get("_target_") == BASIC_LAUNCHER:
            self._composed = ComposedOnce(hydra_context.config_loader)
            hydra_context = HydraContext(
                config_loader=self._composed,  # type: ignore[arg-type]
                callbacks=hydra_context.callbacks,
            )
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        n_jobs = config.hydra.launcher.get("n_jobs")
        self._parallel = usable_cores() if n_jobs == -1 else int(n_jobs or 1)

    def sweep(self, arguments: list[str]) -> Any:
        from sweep.cli.interrupted import ends_as_killed

        assert self.config is not None
        with ends_as_killed(self.config):  # Ctrl-C: one line, exit 130, nothing left RUNNING
            return super().sweep(arguments)

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        batch = super().get_job_batch()
        groups = by_trained_model(batch)
        if self._composed is not None:  # no launcher chosen: one at a time, or side by side
            self._go_side_by_side(groups)
        if self._parallel <= 1:
            return batch
        if self.deal_whole_models(groups):
            return [job for group in groups for job in group]
        return interleaved(batch, self._parallel)

    def _go_side_by_side(self, groups: Sequence[Sequence[Sequence[str]]]) -> None:
        """Run the grid on joblib workers, a trained model each at a time, when more than
        one fits (:func:`side_by_side`) and every model has as many jobs as the others."""
        workers = side_by_side(self._workers, len(groups), usable_cores(), available_bytes())
        if workers < 2 or jobs_per_model(groups) is None:
            return
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

        assert self.config is not None
        self.launcher = JoblibLauncher(n_jobs=workers, backend=None, prefer="processes")
        self.launcher.setup(hydra_context=self._context, task_function=self._task,
                            config=self.config)  # fmt: skip
        self._composed, self._parallel = None, workers  # the workers compose their own configs
        log.info(
            "grid: %d trained models, on %d workers side by side (each runs a model's jobs "
            "one after the other; hydra.sweeper.workers=1: one job at a time)",
            len(groups), workers,
        )  # fmt: skip

    def deal_whole_models(self, groups: Sequence[Sequence[Sequence[str]]]) -> bool:
        """Have joblib hand each worker all the jobs of one trained model at once, if it can.

        Jobs taken one at a time (even interleaved) still meet: a worker done with a cheap
        model's job takes the next job of a model the other worker is still training, and
        waits on its lock. In one joblib batch a worker runs a model's jobs one after the
        other. Only when every model has the same number of jobs (a grid's product does),
        there are at least as many models as workers, and ``batch_size`` is joblib's "auto"
        (a user's own choice is kept). ``pre_dispatch="all"`` keeps batches aligned to models.
        """
        settings = getattr(self.launcher, "joblib", None)
        per_model = jobs_per_model(groups)
        if (
            settings is None
            or str(settings.get("batch_size", "auto")) != "auto"
            or per_model is None
            or len(groups) < self._parallel
        ):
            return False
        settings["batch_size"] = per_model
        settings["pre_dispatch"] = "all"
        return True

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of the batch now (a bad override stops the sweep before the
        first job), keeping the configs for the launcher when it runs in this process."""
        if self._composed is None:
            super().validate_batch_is_legal(batch)
            return
        assert self.config is not None
        for overrides in batch:
            self._composed.compose_and_keep(self.config, overrides)
