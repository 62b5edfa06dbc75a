"""Old names that users' configs and code may still hold: they keep working, with a warning.

A user's YAML names classes (``_target_: sweep.data.ImageDataset``) and settings
(``runtime: tflite_micro``); a move inside the package must not break it. Every name
that moved since the first release is one row here:

- :data:`MOVED_MODULES`: an old module path imports the new module (so an old
  ``_target_``, or ``from sweep.job import run``, still resolves), through a finder
  installed when ``sweep`` is imported;
- :data:`MOVED_SETTINGS`: an old setting key of a group is translated (or dropped when
  it no longer means anything) by :func:`migrate_settings` before the settings are
  checked.

Each old name warns once per process, one log line (logger ``sweep``, level WARNING)
naming its replacement.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger("sweep")

MOVED_MODULES: dict[str, str] = {
    # First release -> round two (one module per config group).
    "sweep.data": "sweep.groups.dataset",
    "sweep.models": "sweep.groups.model",
    "sweep.training": "sweep.groups.train",
    "sweep.pretrain": "sweep.groups.pretrain",
    "sweep.quantize": "sweep.groups.quantize",
    "sweep.targets": "sweep.groups.target",
    "sweep.idx": "sweep.formats.idx",
    "sweep.bundle": "sweep.runtimes.bundle",
    "sweep.mcu": "sweep.runtimes.tflm",
    "sweep.tensors": "sweep.runtimes.tensors",
    "sweep.flatbuffer": "sweep.runtimes.flatbuffer",
    "sweep.validation": "sweep.settings",
    # Round two -> round three (the root holds entry points and vocabulary only).
    "sweep.callbacks": "sweep.cli.sweep_callback",
    "sweep.job": "sweep.pipeline.job",
    "sweep.sequence": "sweep.pipeline.sequence",
    "sweep.components": "sweep.pipeline.components",
    "sweep.context": "sweep.pipeline.context",
    "sweep.heap": "sweep.pipeline.heap",
    "sweep.paths": "sweep.stores.paths",
    "sweep.tracking": "sweep.stores.tracking",
    "sweep.cache": "sweep.stores.stage_cache",
    "sweep.results": "sweep.stores.result_cache",
    "sweep.groups.idx": "sweep.formats.idx",
    "sweep.groups.board": "sweep.checks.board_emulation",
    "sweep.ranking.records": "sweep.ranking.run_records",
    "sweep.search.records": "sweep.search.trial_runs",
    "sweep.search.results": "sweep.search.study_report",
    "sweep.search.settings": "sweep.search.search_settings",
}
"""Old module path -> where it lives now."""


@dataclass(frozen=True)
class MovedSetting:
    """A setting key of a group that moved: ``replace`` turns its value into new settings
    (``{}`` when it no longer means anything); ``advice`` says what to write instead."""

    group_kind: str  # "target", "dataset", ...: the group whose settings hold the key
    key: str
    advice: str
    replace: Callable[[Any], dict[str, Any]]


MOVED_SETTINGS: tuple[MovedSetting, ...] = (
    MovedSetting(
        "target",
        "cpi_source",
        "board estimates are computed by code (the core's cycle model and the board's "
        "target.memory: sweep.runtimes.cortex_m.estimate) and sweep-profile shows their basis",
        lambda value: {},
    ),
)
"""Setting keys that moved; ``migrate_settings`` applies them."""

_warned: set[str] = set()


def warn_once(old: str, message: str) -> None:
    """One warning line per old name and process (in Hydra's job log, or on stderr)."""
    if old in _warned:
        return
    _warned.add(old)
    log.warning("%s", message)


def migrate_settings(group: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` of ``group`` with moved keys translated, each with a warning."""
    moved = {m.key: m for m in MOVED_SETTINGS if m.group_kind == group}
    out = dict(settings)
    for key in [k for k in out if k in moved]:
        rule = moved[key]
        value = out.pop(key)
        for new_key, new_value in rule.replace(value).items():
            out.setdefault(new_key, new_value)
        warn_once(f"{group}.{key}", f"{group}.{key} is deprecated: {rule.advice}.")
    return out


class _AliasLoader(importlib.abc.Loader):
    """Loads an old module path as a module that forwards every name to its replacement
    (the very same classes and functions; the replacement's own module is left as it is)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """The default module object: filled in by :meth:`exec_module`."""

    def exec_module(self, module: ModuleType) -> None:
        warn_once(self.old, f"{self.old} is deprecated: it moved to {self.new}.")
        replacement = importlib.import_module(self.new)
        module.__getattr__ = lambda name: getattr(replacement, name)  # type: ignore[method-assign]
        module.__dir__ = lambda: dir(replacement)  # type: ignore[method-assign]
        module.__doc__ = f"Deprecated alias of {self.new}."


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds old module paths (after every real finder, so a real module always wins)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(fullname, new))


def install() -> None:
    """Serve :data:`MOVED_MODULES` (idempotent; called when ``sweep`` is imported)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
