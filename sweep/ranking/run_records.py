"""The run table every reporting step works on.

Ranking, statistics, the Pareto front and the reproduction report all read the
same rows, whether they come from an MLflow store or are built by hand in a
test, so none of them needs to know where runs are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sweep.groups import SEQUENCE_KEYS
from sweep.pipeline.context import named

VARIANT = "variant"


@dataclass(frozen=True)
class RunRecord:
    """One job of a sweep: which sequence it ran and what it measured."""

    run_id: str
    # SEQUENCE_KEYS -> option name, e.g. {"quantize": "int8"}, and VARIANT -> the knobs
    # that set this run apart from the others ranked with it (e.g. "model.filters=8").
    sequence: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "FINISHED"  # MLflow status: FINISHED, FAILED, RUNNING, KILLED
    seed: int = 0
    error: str = ""  # why a FAILED run failed
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Human-readable sequence, e.g. ``mnist · cnn · graph · pruning → int8``."""
        s = self.sequence
        head = " · ".join(s.get(k, "?") for k in SEQUENCE_KEYS[:-1])
        return named(f"{head} → {s.get('quantize', '?')}", s.get(VARIANT, ""))

    @property
    def group_key(self) -> tuple[str, ...]:
        """Everything that identifies the sequence except the seed (for replicates)."""
        return tuple(self.sequence.get(k, "") for k in (*SEQUENCE_KEYS, VARIANT))

    @property
    def ok(self) -> bool:
        return self.status == "FINISHED"
