"""Pareto fronts and deployment budgets over sequences.

No single sequence is smallest, most accurate and fastest at once, so besides the
per-objective winners users need the trade-off set (the Pareto front) and a way
to say "at most this big, at most this much less accurate" and pick from what is
left. Works on :class:`SequenceSummary` rows (means) or raw :class:`RunRecord` rows.

Sizes are in KB with **1 KB = 1000 bytes**: the reference study's 22.5 KB and
12.06x figures fit an h5 file of ~272 kB only in decimal units (272,352 B / 12.06
= 22,583 B = 22.6 kB, but 22.05 KiB), and decimal units are what users see in
``ls -lh --si`` and vendor datasheets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from sweep.metrics import METRICS, host_objectives
from sweep.ranking.run_records import VARIANT, RunRecord
from sweep.ranking.stats import SequenceSummary

log = logging.getLogger(__name__)

BYTES_PER_KB = 1000
# (metric, higher_is_better) for the questions the tool answers on the desktop.
DEFAULT_OBJECTIVES: list[tuple[str, bool]] = host_objectives()

Row = TypeVar("Row", SequenceSummary, RunRecord)
BaselineKey = tuple[str, str, str, str]  # (dataset, model, train, their knobs)
_AFTER_TRAINING = ("pretrain.", "quantize.", "target.", "measure.", "rank.")


def metric_value(row: SequenceSummary | RunRecord, metric: str) -> float | None:
    """The figure used for comparisons: mean over replicates, or the run's own value."""
    if isinstance(row, SequenceSummary):
        return row.mean(metric)
    v = row.metrics.get(metric)
    return None if v is None else float(v)


def by_dataset(row: SequenceSummary | RunRecord) -> str:
    """Default grouping: trade-offs across datasets are meaningless."""
    return row.sequence.get("dataset", "")


def _dominates(a: list[float], b: list[float], better: list[bool]) -> bool:
    """a is at least as good as b everywhere and strictly better somewhere."""
    strictly = False
    for x, y, hi in zip(a, b, better, strict=True):
        if (x < y) if hi else (x > y):
            return False
        strictly = strictly or x != y
    return strictly


def pareto_front(
    rows: Iterable[Row],
    objectives: list[tuple[str, bool]] = DEFAULT_OBJECTIVES,
    group: Callable[[Row], Hashable] | None = by_dataset,
) -> list[Row]:
    """Non-dominated rows within each group (``group=None``: one group), input order kept.

    Rows identical on every objective do not dominate each other, so duplicates stay
    together on (or off) the front. Rows missing an objective cannot be placed and
    are left out.
    """
    names = [m for m, _ in objectives]
    better = [hi for _, hi in objectives]
    points: list[tuple[Row, Hashable, list[float]]] = []
    for r in rows:
        vals = [metric_value(r, m) for m in names]
        if any(v is None for v in vals):
            log.debug("pareto_front: %s lacks one of %s", getattr(r, "label", r), names)
            continue
        points.append((r, group(r) if group else None, vals))  # type: ignore[arg-type]
    return [
        r
        for r, g, v in points
        if not any(g2 == g and _dominates(v2, v, better) for _, g2, v2 in points)
    ]


def baseline_key(sequence: Mapping[str, str]) -> BaselineKey:
    """What a sequence's float model shares with it: dataset, model and train, and the
    knobs of those three (``model.filters=8``), not those of pretrain or quantize."""
    knobs = " ".join(
        token
        for token in sequence.get(VARIANT, "").split()
        if not token.lstrip("+~").startswith(_AFTER_TRAINING)
    )
    return (
        sequence.get("dataset", ""),
        sequence.get("model", ""),
        sequence.get("train", ""),
        knobs,
    )


def is_float_baseline(sequence: Mapping[str, str]) -> bool:
    """The float model: no pre-training optimizer, no quantizer (float32 TFLite)."""
    return sequence.get("pretrain") == "none" and sequence.get("quantize") == "none"


def float_baselines(
    rows: Iterable[SequenceSummary | RunRecord], metric: str = "tflite_accuracy"
) -> dict[BaselineKey, float]:
    """``metric`` of the float32 TFLite model of each dataset/model/train (mean if several)."""
    found: dict[BaselineKey, list[float]] = {}
    for r in rows:
        v = metric_value(r, metric)
        if is_float_baseline(r.sequence) and v is not None:
            found.setdefault(baseline_key(r.sequence), []).append(v)
    return {k: sum(v) / len(v) for k, v in found.items()}


def apply_budget(
    rows: Iterable[Row],
    max_size_kb: float | None = None,
    max_accuracy_drop_pp: float | None = None,
    baseline_accuracy: Mapping[BaselineKey, float] | Callable[[Row], float | None] | None = None,
    limits: Mapping[str, float] | None = None,
) -> list[Row]:
    """Rows whose ``tflite_bytes`` <= max_size_kb (1 KB = 1000 B) and whose
    ``tflite_accuracy`` is at most ``max_accuracy_drop_pp`` percentage points below the
    float baseline of the same dataset/model/train (pretrain none, quantize none).

    ``baseline_accuracy``: a dict keyed by :func:`baseline_key`, a function of the row,
    or None to take the baselines from ``rows`` themselves. Rows whose size, accuracy
    or baseline is unknown fail the corresponding budget (it cannot be verified).
    ``limits``: metric -> bound, an upper bound for lower-is-better metrics and a lower
    bound for higher-is-better ones (:mod:`sweep.metrics`); a row without the metric fails.
    Means are compared; the caller ranks what is left.
    """
    rows = list(rows)
    if max_accuracy_drop_pp is not None and baseline_accuracy is None:
        baseline_accuracy = float_baselines(rows)
    if isinstance(baseline_accuracy, Mapping):
        table = baseline_accuracy

        def baseline(r: Row) -> float | None:
            return table.get(baseline_key(r.sequence))
    else:
        baseline = baseline_accuracy  # type: ignore[assignment]

    kept = []
    for r in rows:
        if max_size_kb is not None:
            size = metric_value(r, "tflite_bytes")
            if size is None or size / BYTES_PER_KB > max_size_kb:
                continue
        if max_accuracy_drop_pp is not None:
            acc, base = metric_value(r, "tflite_accuracy"), baseline(r)  # type: ignore[misc]
            if acc is None or base is None:
                log.info("budget: no accuracy or float baseline for %s", r.label)
                continue
            if (base - acc) * 100 > max_accuracy_drop_pp + 1e-9:
                continue
        if not _within_limits(r, limits or {}):
            continue
        kept.append(r)
    return kept


def _within_limits(row: Row, limits: Mapping[str, float]) -> bool:
    for name, bound in limits.items():
        value = metric_value(row, name)
        if value is None:
            return False
        if (value < bound) if METRICS[name].higher_is_better else (value > bound):
            return False
    return True
