"""The run-level blocks of conf/config.yaml: top-level keys, ``measure`` and ``rank``.

They live apart from the groups (one option each) and from the ranking package
because both the job (which checks every setting before it starts) and the
ranking (which reads ``rank``) need them: the job side must not import the
ranking side.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.metrics import METRICS
from sweep.settings import Rule, above, at_least, setting


@dataclass
class RunSettings:
    """The top-level knobs (groups and blocks are checked apart)."""

    seed: int = setting(0, at_least(0))
    objective: str | list = "tflite_accuracy"
    threads: int = setting(0, at_least(0))  # 0 = TensorFlow's default
    allow_outside_outputs: bool = False


@dataclass
class MeasureSettings:
    """How one-image latency is timed on the desktop runtime (the ``measure`` block).

    Windows and warm-up are set in milliseconds, not invokes: a few thousand
    microsecond-long invokes end before the CPU settles, and re-measuring the
    same file in a new process then differed by up to 40% on these machines.
    The defaults (0.15 s per model) held as still across fresh processes as
    1.5 s did (``benchmarks/latency_stability.py``), and latency is the one
    figure a warm sweep re-measures for every model.
    """

    windows: int = setting(10, at_least(1))
    window_ms: float = setting(10.0, above(0))
    warmup_ms: float = setting(50.0, at_least(0))
    num_threads: int = setting(1, at_least(1))
    reuse_latency: bool = False  # reuse a latency timed on this host for the same model


def _known_limits() -> Rule:
    """Every limit names a metric of the table that has a better direction."""
    ranked = sorted(name for name, m in METRICS.items() if m.better)
    return Rule(
        lambda limits, _: all(
            k in ranked and isinstance(v, int | float) for k, v in limits.items()
        ),
        "a mapping of metric name to a number, with metrics among " + ", ".join(ranked),
    )


@dataclass
class RankSettings:
    """What the ranking may choose from (``rank.*`` in the config, flags of ``sweep-rank``).

    ``max_accuracy_drop`` is the accuracy floor: smallest, fastest and least-RAM are
    chosen among sequences within this many percentage points of the best accuracy
    reached on the same dataset (null: no floor), so a model that does not work is
    nobody's smallest. ``max_size_kb`` and ``limits`` (metric -> bound: at most for
    lower-is-better metrics, at least for higher-is-better ones) ask for the best
    accuracy within a budget, on top of the floor.
    """

    max_size_kb: float | None = setting(None, above(0))
    max_accuracy_drop: float | None = setting(1.0, at_least(0))
    limits: dict = setting(factory=dict, rule=_known_limits())

    @property
    def has_budget(self) -> bool:
        return self.max_size_kb is not None or bool(self.limits)

    def describe(self) -> str:
        parts = []
        if self.max_size_kb is not None:
            parts.append(f"size <= {self.max_size_kb:g} KB")
        for name, bound in self.limits.items():
            parts.append(f"{name} {'>=' if _higher_is_better(name) else '<='} {bound:g}")
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy within {self.max_accuracy_drop:g} pp of the best")
        return ", ".join(parts)


def _higher_is_better(name: str) -> bool:
    return METRICS[name].higher_is_better
