"""The run-level blocks of conf/config.yaml: top-level keys, ``measure`` and ``rank``.

They live apart from the groups (one option each) and from the ranking package
because both the job (which checks every setting before it starts) and the
ranking (which reads ``rank``) need them: the job side must not import the
ranking side.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.settings import above, at_least, setting


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
    """

    windows: int = setting(20, at_least(1))
    window_ms: float = setting(50.0, above(0))
    warmup_ms: float = setting(500.0, at_least(0))
    num_threads: int = setting(1, at_least(1))


@dataclass
class RankSettings:
    """Budget questions (``rank.*`` in the config, flags of the ranking CLI)."""

    max_size_kb: float | None = setting(None, above(0))
    max_accuracy_drop: float | None = setting(None, at_least(0))  # pp below the float32 model

    @property
    def has_budget(self) -> bool:
        return self.max_size_kb is not None or self.max_accuracy_drop is not None

    def describe(self) -> str:
        parts = []
        if self.max_size_kb is not None:
            parts.append(f"size <= {self.max_size_kb:g} KB")
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy drop <= {self.max_accuracy_drop:g} pp vs float32")
        return ", ".join(parts)
