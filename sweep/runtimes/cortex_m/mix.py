"""The instruction mix of a run: block profiles times how often each block ran.

An :class:`InstructionMix` is what a cycle model consumes (:mod:`.timing`):
instructions per class (they sum to the exact instruction count the emulator
reports), the pair facts of :mod:`.isa_classes`, and how control left the blocks
(taken vs not-taken branches), which only the run itself knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from sweep.runtimes.cortex_m.isa_classes import (
    BRANCH_FEATURES,
    FEATURES,
    INSTRUCTION_CLASSES,
    BlockProfile,
)

ALL_FEATURES: tuple[str, ...] = FEATURES + BRANCH_FEATURES
"""Every key of a mix, in a fixed order."""


@dataclass(frozen=True)
class BlockRun:
    """One block's share of a run: its profile, executions, and how many of them
    continued straight into the block at its end address (fell through)."""

    profile: BlockProfile
    executions: int
    fall_throughs: int


class InstructionMix(Mapping[str, int]):
    """Counts per feature (:data:`ALL_FEATURES`); missing features count 0."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        counts = dict(counts or {})
        unknown = set(counts) - set(ALL_FEATURES)
        if unknown:
            raise KeyError(f"unknown mix features: {sorted(unknown)}")
        self._counts = {f: int(counts.get(f, 0)) for f in ALL_FEATURES}

    def __getitem__(self, key: str) -> int:
        return self._counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self._counts.items() if v)
        return f"InstructionMix({shown})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InstructionMix) and self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]

    @property
    def instructions(self) -> int:
        """Executed instructions: the sum over the instruction classes."""
        return sum(self._counts[c] for c in INSTRUCTION_CLASSES)

    def share(self, *classes: str) -> float:
        """Fraction of the instructions in ``classes``."""
        total = self.instructions
        return sum(self._counts[c] for c in classes) / total if total else 0.0

    def plus(self, feature: str, count: int) -> InstructionMix:
        """This mix with ``count`` more (or fewer) of ``feature``."""
        counts = dict(self._counts)
        counts[feature] += count
        if counts[feature] < 0:
            raise ValueError(f"{feature} would be negative ({counts[feature]})")
        return InstructionMix(counts)

    def as_dict(self, nonzero: bool = False) -> dict[str, int]:
        return {k: v for k, v in self._counts.items() if v or not nonzero}


def mix_of(runs: Iterable[BlockRun]) -> InstructionMix:
    """Sum ``executions x profile`` over blocks, and count how control left them."""
    totals = [0] * len(FEATURES)
    branches = dict.fromkeys(BRANCH_FEATURES, 0)
    for run in runs:
        n = run.executions
        for i, c in enumerate(run.profile.counts):
            if c:
                totals[i] += c * n
        exit_kind = run.profile.exit
        if exit_kind is None:
            continue
        taken = n - run.fall_throughs
        branches["taken"] += taken
        branches[f"taken_{exit_kind}"] += taken
        if exit_kind == "cond":
            branches["not_taken"] += run.fall_throughs
            if run.profile.backward:
                branches["loop_exits"] += run.fall_throughs
    counts = dict(zip(FEATURES, totals, strict=True))
    counts.update(branches)
    return InstructionMix(counts)
