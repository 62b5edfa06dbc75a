"""Hydra finds sweepers only in the ``hydra_plugins`` namespace package: this shim
registers ``hydra/sweeper=search`` and hands the work to :mod:`sweep.search`.

Hydra imports every plugin module on every command, so Optuna (a second of imports) is
imported only when a search actually starts; the settings' schema is light (no Optuna).
"""

import dataclasses
from dataclasses import field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweep.search.search_settings import SweeperSettings


def _schema() -> type:
    """Hydra's node for ``hydra/sweeper=search``, made from the one definition of the settings
    (:class:`sweep.search.search_settings.SweeperSettings`): the same keys and defaults, typed
    ``Any`` on purpose, so that the project's own check names a bad value in its one-line
    style instead of OmegaConf."""
    fields = [
        (f.name, Any, field(default=f.default))
        for f in dataclasses.fields(SweeperSettings)
        if f.default is not dataclasses.MISSING
    ]
    target = "hydra_plugins.sweep_search.search_sweeper.SearchSweeper"
    return dataclasses.make_dataclass(
        "SearchSweeperConf",
        [("_target_", str, field(default=target)), *fields,
         ("params", Any, field(default_factory=dict))],
    )  # fmt: skip


SearchSweeperConf = _schema()

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
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from sweep.cli.interrupted import ends_as_killed

        with ends_as_killed(self.config):  # Ctrl-C: one line, exit 130, nothing left RUNNING
            return self.search.sweep(arguments)
