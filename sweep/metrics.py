"""The one table of metrics: what each figure a job logs means and how to compare it.

Every place that reads a metric by its meaning (intervals and ties in the
statistics, the ranking's objectives, the Pareto front, budgets, the docs) asks
this table, so a new metric is one row plus the code that measures it. The rows of
what every job measures (sizes, accuracy, desktop latency, the job's cost) are
here; a measurement check (:mod:`sweep.checks`) declares its own rows in its class,
and they join the table when the class is defined (the built-in checks' the first
time the table is read).

A row says:

- ``unit`` and ``better`` (``"lower"``, ``"higher"`` or ``None`` when neither
  is better, e.g. a count of test images);
- ``kind``: how its noise is judged. ``DETERMINISTIC`` figures (sizes, counts,
  emulated instruction counts) are equal on every repeat, so two sequences tie
  when their means are within :data:`DETERMINISTIC_TOLERANCE`; a ``PROPORTION``
  (accuracy on ``test_examples`` images) gets a Wilson interval from one run; a
  ``TIMING`` gets the spread named by ``spread`` (p10, p90 over timing windows);
- ``objective``: the question it answers in the ranking (``"smallest"``,
  ``"most_accurate"``, ``"fastest"``, ``"least_ram"``) and ``scope``, on which
  targets (``HOST``: the desktop runtime; ``MCU``: a microcontroller target).
  Where several rows answer one objective on a scope, the one with the lowest
  ``preference`` that a sweep measured is used (a board estimate before the host
  proxy, the host's figure when a run has no board figure);
- ``shown``: a format for the figure beside every ranking winner, if it is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

DETERMINISTIC, PROPORTION, TIMING = "deterministic", "proportion", "timing"
HOST, MCU, ANY = "host", "mcu", "any"
DETERMINISTIC_TOLERANCE = 0.005
"""Relative gap under which two deterministic figures count as a tie (0.5 %)."""


@dataclass(frozen=True)
class Metric:
    """One row of the table (see the module docstring)."""

    name: str
    unit: str
    better: str | None
    kind: str
    heading: str
    objective: str | None = None
    scope: str = ANY
    spread: tuple[str, str] | None = None
    preference: int = 0
    shown: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"


_row = Metric  # short, so each row of the table stays on one line


_D, _P, _T = DETERMINISTIC, PROPORTION, TIMING
_JOB_ROWS: dict[str, Metric] = {
    m.name: m
    for m in (
        # Ranked objectives first: their order is the order of the ranking's rows.
        _row("tflite_bytes", "B", "lower", _D, "smallest size", "smallest", HOST),
        _row("tflite_accuracy", "", "higher", _P, "best accuracy", "most_accurate"),
        _row(
            "latency_median_us", "µs", "lower", _T, "fastest inference", "fastest", HOST,
            ("latency_p10_us", "latency_p90_us"),
        ),
        # Size and structure.
        _row("tflite_gzip_bytes", "B", "lower", _D, "gzip -9 size of the .tflite"),
        _row("keras_bytes", "B", "lower", _D, "Keras HDF5 file with optimizer state"),
        _row("param_count", "", "lower", _D, "parameters of the architecture"),
        _row("nonzero_weights", "", "lower", _D, "non-zero weights in the converted kernels"),
        _row("sparsity", "", None, _D, "fraction of zero weights"),
        # Accuracy.
        _row("keras_accuracy", "", "higher", _P, "accuracy of the Keras model"),
        _row("test_examples", "", None, _D, "test images scored"),
        # Desktop timing.
        _row("latency_p10_us", "µs", "lower", _T, "10th percentile of the timing windows"),
        _row("latency_p90_us", "µs", "lower", _T, "90th percentile of the timing windows"),
        _row("latency_windows", "", None, _D, "timing windows"),
        _row("latency_invokes_per_window", "", None, _T, "invokes per timing window (calibrated)"),
        _row("latency_threads", "", None, _D, "interpreter threads while timing"),
        _row("test_set_seconds", "s", "lower", _T, "one-image invokes over the test set"),
        # Cost of the job.
        _row("train_seconds", "s", "lower", _T, "training time"),
        _row("pretrain_seconds", "s", "lower", _T, "pruning / QAT fine-tuning time"),
        _row("convert_seconds", "s", "lower", _T, "TFLite conversion time"),
        _row("train_cache_hit", "", None, _D, "1 when training came from the cache"),
        _row("pretrain_cache_hit", "", None, _D, "1 when pre-training came from the cache"),
        _row("results_cache_hit", "", None, _D, "1 when conversion and results were reused"),
        _row("phase_train_seconds", "s", "lower", _T, "job time training (or loading it)"),
        _row("phase_pretrain_seconds", "s", "lower", _T, "job time fine-tuning (or loading it)"),
        _row("phase_convert_seconds", "s", "lower", _T, "job time converting"),
        _row("phase_accuracy_seconds", "s", "lower", _T, "job time scoring the test set"),
        _row("phase_microcontroller_seconds", "s", "lower", _T, "job time on MCU checks"),
        _row("phase_latency_seconds", "s", "lower", _T, "job time timing latency"),
    )
}  # fmt: skip


class _Table(Mapping[str, Metric]):
    """The rows by name: the job's, then every check's (the built-in checks are imported
    the first time the table is read, so their rows are always there)."""

    def __init__(self, rows: dict[str, Metric]) -> None:
        self._rows = dict(rows)
        self._owners: dict[str, str] = dict.fromkeys(rows, "sweep.metrics")
        self._loading = False
        self._loaded = False

    def _load_builtin_checks(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            import sweep.checks  # noqa: F401  (its checks register their rows)
        finally:
            self._loading = False
        self._loaded = True

    def register(self, rows: Iterable[Metric], owner: str) -> None:
        for row in rows:
            known = self._rows.get(row.name)
            if known is not None and known != row and self._owners[row.name] != owner:
                raise ValueError(
                    f"metric {row.name!r} of {owner} is already a different row of "
                    f"{self._owners[row.name]}: give it another name"
                )
            self._rows[row.name] = row
            self._owners[row.name] = owner

    def __getitem__(self, name: str) -> Metric:
        self._load_builtin_checks()
        return self._rows[name]

    def __iter__(self) -> Iterator[str]:
        self._load_builtin_checks()
        return iter(list(self._rows))

    def __len__(self) -> int:
        self._load_builtin_checks()
        return len(self._rows)


METRICS = _Table(_JOB_ROWS)
"""Every metric's row, by name (see the module docstring)."""


def register(rows: Iterable[Metric], owner: str) -> None:
    """Add a check's rows to the table (a name may not mean two things)."""
    METRICS.register(rows, owner)


def objectives() -> tuple[str, ...]:
    """The ranking's objectives, in the order of the rows that first answer them."""
    return tuple(dict.fromkeys(m.objective for m in METRICS.values() if m.objective))


def metric(name: str) -> Metric | None:
    """The row of ``name``, or None for a metric the table does not know (a user's own)."""
    return METRICS.get(name)


def is_deterministic(name: str) -> bool:
    row = METRICS.get(name)
    return row is not None and row.kind == DETERMINISTIC


def reproducible(metrics: dict[str, float]) -> dict[str, float]:
    """What a re-run must reproduce exactly: every metric but timings and cache hits."""
    return {
        k: v
        for k, v in metrics.items()
        if not k.endswith("cache_hit") and (k not in METRICS or METRICS[k].kind != TIMING)
    }


def objective_metrics(objective: str, scope: str) -> list[Metric]:
    """Rows answering ``objective`` on ``scope`` (HOST or MCU), by preference then table
    order; on a microcontroller the desktop rows follow as a fallback for runs without
    board figures."""
    rows = [m for m in METRICS.values() if m.objective == objective]
    first = sorted((m for m in rows if m.scope in (scope, ANY)), key=lambda m: m.preference)
    return first + ([m for m in rows if m.scope == HOST] if scope == MCU else [])


def host_objectives() -> list[tuple[str, bool]]:
    """(metric, higher is better) of the desktop objectives: the default Pareto axes."""
    firsts = [rows[0] for o in objectives() if (rows := objective_metrics(o, HOST))]
    return [(m.name, m.higher_is_better) for m in firsts]


def markdown_table() -> str:
    """The table as Markdown, for the README and ``python -m sweep.metrics``."""
    lines = ["| metric | unit | better | kind | meaning |", "| --- | --- | --- | --- | --- |"]
    for m in METRICS.values():
        lines.append(f"| `{m.name}` | {m.unit} | {m.better or '—'} | {m.kind} | {m.heading} |")
    return "\n".join(lines)


if __name__ == "__main__":  # the package's table (checks register their rows there, not here)
    from sweep import metrics

    sys.stdout.write(metrics.markdown_table() + "\n")
