"""Measurement checks: what a target measures of a converted model, one class per check.

A target's YAML names its checks in order (``checks: [tflite_micro, cortex_m]``): a
built-in check by its short name (:data:`BUILTIN`), a check of your own by its
class path (``checks: [tflite_micro, my_checks.RamProbe]``). See :mod:`.base` for
the interface; :func:`check_class` resolves a name, :func:`exclusions` tells the
ranking why a run must not be named a winner.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from sweep.checks.base import (
    CHECKS_TAG,
    EXCLUSION_TAG,
    SCOPE_TAG,
    Check,
    Measurement,
    ModelUnderTest,
)
from sweep.checks.board_emulation import CortexMCheck
from sweep.checks.micro_runtime import TfliteMicroCheck
from sweep.settings import ConfigError

BUILTIN: dict[str, type[Check]] = {c.name: c for c in (TfliteMicroCheck, CortexMCheck)}
"""The checks this package ships, by the name a YAML gives them."""

__all__ = [
    "BUILTIN",
    "CHECKS_TAG",
    "EXCLUSION_TAG",
    "SCOPE_TAG",
    "Check",
    "Measurement",
    "ModelUnderTest",
    "check_class",
    "exclusions",
]


def check_class(name: str, setting: str = "target.checks") -> type[Check]:
    """The check a YAML names: a built-in short name, or ``package.module.Class``."""
    if name in BUILTIN:
        return BUILTIN[name]
    valid = f"one of {', '.join(BUILTIN)}, or the class path of a check of your own"
    module_name, _, class_name = name.rpartition(".")
    if not module_name:
        raise ConfigError(f"{setting}: {name!r} is not a check: expected {valid}.")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{setting}: {name!r} cannot be imported ({error}).") from None
    if not (isinstance(found, type) and issubclass(found, Check)):
        raise ConfigError(
            f"{setting}: {name} is not a check: a check subclasses sweep.checks.Check."
        )
    return found


def exclusions(metrics: Mapping[str, float], tags: Mapping[str, str]) -> list[str]:
    """Why a run must not be ranked, in the order its checks ran (empty: it may be).

    A run records its checks' reasons as ``exclusion.<check>`` tags. A run recorded
    before checks existed (no ``target.checks`` tag, but tflite-micro's metrics) is
    judged by the built-in checks' own rules, so old stores rank as they did.
    """
    if CHECKS_TAG in tags:
        prefix = len(EXCLUSION_TAG)
        recorded = {k[prefix:]: why for k, why in tags.items() if k.startswith(EXCLUSION_TAG)}
        return [recorded[name] for name in tags[CHECKS_TAG].split(",") if name in recorded]
    if "mcu_runs" not in metrics:
        return []
    for check in (TfliteMicroCheck(), CortexMCheck()):
        reason = check.exclusion(dict(metrics), dict(tags))
        if reason:
            return [reason]
    return []
