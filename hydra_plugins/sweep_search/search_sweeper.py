"""Hydra finds sweepers only in the ``hydra_plugins`` namespace package: this shim
registers ``hydra/sweeper=search`` and hands the work to :mod:`sweep.search`.

Hydra imports every plugin module on every command, so Optuna (a second of imports) is
imported only when a search actually starts.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class SearchSweeperConf:
    """Typed ``Any`` on purpose: :mod:`sweep.search.search_settings` checks the values and names a
    bad one in the project's one-line style."""

    _target_: str = "hydra_plugins.sweep_search.search_sweeper.SearchSweeper"
    n_trials: Any = 20
    timeout_minutes: Any = None
    n_jobs: Any = 1
    sampler: Any = "tpe"
    seed: Any = 0
    n_startup_trials: Any = 10
    max_failures_in_a_row: Any = 5
    study_name: Any = "search"
    storage: Any = None
    params: Any = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="search", node=SearchSweeperConf, provider="sweep"
)


class SearchSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from sweep.search.sweeper import Search

        self.search = Search(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
