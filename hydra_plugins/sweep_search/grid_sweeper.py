"""Hydra's basic grid sweeper, each job's config composed once instead of twice.

Hydra's basic sweeper composes every job's config before launching the batch (so a
bad override stops the sweep before the first job) and the basic launcher composes it
again to run it: ~50 ms each on these machines, ~8 s of a 120-job grid spent composing
configs it already had. Here the first composition is kept and handed to the launcher.
Only for the in-process basic launcher: other launchers ship the context to other
processes, where a store of configs would only add weight.

With a parallel launcher (``hydra/launcher=joblib``, ``n_jobs`` > 1) the batch is reordered
(:func:`interleaved`) so that jobs running side by side need different trained models:
Hydra's product order puts the quantizers of one trained model next to each other, and
the second worker would wait on the stage cache's lock while the first one trains it.

It is registered as ``hydra/sweeper=basic``, in place of Hydra's own (which it
subclasses, and this module imports first so ours is the one kept): a primary-config
``override hydra/sweeper: grid`` would silently win over an experiment's own sweeper
(``override /hydra/sweeper: search``), so the default is changed where it is defined.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.sweep_search.grid_sweeper.GridSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045  (OmegaConf reads these types)
    params: Optional[dict[str, str]] = None  # noqa: UP045


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


def interleaved(batch: Sequence[Sequence[str]], parallel: int) -> list[Sequence[str]]:
    """The batch reordered for ``parallel`` workers that take jobs in order.

    Jobs are grouped by trained model, in the order Hydra lists them; each run of
    ``parallel`` consecutive groups is dealt out round-robin (A1 B1 A2 B2 ...), so that side
    by side the workers train and use different models, and groups of the same dataset
    stay together (a worker keeps one dataset in memory). The jobs themselves, and what
    each measures, do not change; only which job number runs which config.
    """
    groups: dict[tuple[str, ...], list[Sequence[str]]] = {}
    for overrides in batch:
        groups.setdefault(_train_stage(overrides), []).append(overrides)
    ordered = list(groups.values())
    out: list[Sequence[str]] = []
    for start in range(0, len(ordered), parallel):
        chunk = ordered[start : start + parallel]
        for i in range(max(len(g) for g in chunk)):
            out += [g[i] for g in chunk if i < len(g)]
    return out


class GridSweeper(BasicSweeper):
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self._composed: Optional[ComposedOnce] = None  # noqa: UP045
        if config.hydra.launcher.get("_target_") == BASIC_LAUNCHER:
            self._composed = ComposedOnce(hydra_context.config_loader)
            hydra_context = HydraContext(
                config_loader=self._composed,  # type: ignore[arg-type]
                callbacks=hydra_context.callbacks,
            )
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        n_jobs = config.hydra.launcher.get("n_jobs")
        self._parallel = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs or 1)

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        batch = super().get_job_batch()
        return interleaved(batch, self._parallel) if self._parallel > 1 else batch

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of the batch now (a bad override stops the sweep before the
        first job), keeping the configs for the launcher when it runs in this process."""
        if self._composed is None:
            super().validate_batch_is_legal(batch)
            return
        assert self.config is not None
        for overrides in batch:
            self._composed.compose_and_keep(self.config, overrides)
