"""The interface of a measurement check, and what flows into and out of one.

A target's measurements are a list of checks named in its YAML
(``checks: [tflite_micro, cortex_m]``). A check is one class with one method,
:meth:`Check.measure`, that returns metrics, tags and files; besides, it declares

- ``rows``: its metrics, as rows of the metrics table (unit, better direction,
  noise kind, the ranking objective it answers), registered when the class is
  defined, so the ranking, the statistics and ``sweep-profile`` know them;
- :meth:`Check.exclusion`: why a sequence must not be named a winner (it does not
  run, it does not fit, its board build disagrees), recorded on the run as the
  tag ``exclusion.<name>`` and read back by the ranking;
- :meth:`Check.cache_material`: what its cached results depend on besides its code
  (the import closure of its class, found by the results cache) and the target's
  settings (always part of the key): a toolchain's version, say.

The same list runs in a sweep's job and in ``sweep-profile``, so the same model on
the same target gives the same figures both ways.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sweep import metrics as table
from sweep.metrics import Metric

if TYPE_CHECKING:
    from sweep.groups.target import Target

EXCLUSION_TAG = "exclusion."
"""Prefix of the tags that carry a check's reason to keep a sequence out of the ranking."""
CHECKS_TAG = "target.checks"
"""Tag naming the checks a run's target ran, in order."""
SCOPE_TAG = "target.scope"
"""Tag saying which rows of the metrics table answer the objectives for a run's target."""


@dataclass
class ModelUnderTest:
    """A converted model and the data it is measured on.

    ``x``: float images in [0, 1] (the test split, or pseudo-random inputs when the
    model comes without data); ``y``: their labels, ``None`` when there are none
    (then no accuracy is measured); ``desktop_accuracy``: the desktop runtime's
    accuracy on the same images, if known; ``out_dir``: where files go (a run's
    folder: they become its artifacts and are kept in the results cache).
    """

    tflite: bytes
    x: np.ndarray
    y: np.ndarray | None
    out_dir: Path
    desktop_accuracy: float | None = None


@dataclass
class Measurement:
    """What checks found. ``files``: paths under the model's ``out_dir`` they wrote;
    ``extras``: in-memory results later checks of the same job may use (never logged
    nor cached)."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def add(self, other: Measurement) -> None:
        self.metrics.update(other.metrics)
        self.tags.update(other.tags)
        self.files += [f for f in other.files if f not in self.files]
        self.extras.update(other.extras)


class Check(ABC):
    """One measurement a target runs on a converted model (see the module docstring).

    Subclasses set ``name`` (how a YAML names it, and its tags' suffix) and ``rows``;
    ``requires`` names checks that must run before it (it reads their ``extras``);
    ``needs_board`` is true for a check that measures against a board's figures.
    """

    name: ClassVar[str]
    rows: ClassVar[tuple[Metric, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    needs_board: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.rows:
            table.register(cls.rows, owner=f"{cls.__module__}.{cls.__qualname__}")

    @abstractmethod
    def measure(self, model: ModelUnderTest, target: Target, earlier: Measurement) -> Measurement:
        """Measure ``model`` on ``target``; ``earlier`` holds what the checks before found."""

    def exclusion(self, metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        """Why a run with these metrics and tags must not be ranked (None: it may be)."""
        return None

    def cache_material(self, target: Target) -> dict[str, Any]:
        """What this check's results depend on besides its code and the target's settings."""
        return {}

    def summary(self, metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        """A few words for the job's last log line (None: nothing to say)."""
        return None
