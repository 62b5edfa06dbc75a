"""Intervals, paired tests and tie-aware winners for the run table.

A ranking that names one "best" sequence when two sequences differ by less than
the measurement noise misleads users, so every figure here carries an interval
and a winner carries the sequences it cannot be told apart from. Self-contained
(stdlib + numpy): scipy is not a declared dependency.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from sweep.metrics import DETERMINISTIC_TOLERANCE, PROPORTION, is_deterministic, metric
from sweep.ranking.run_records import RunRecord

log = logging.getLogger(__name__)

_NORMAL_DF = 1000  # beyond this t and normal quantiles differ by < 0.15 %


def _t_two_sided_cdf(t: float, df: int) -> float:
    """P(|T| <= t) for Student t with integer df (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        s, term = 0.0, math.cos(theta)
        if df > 1:
            s = term
            for k in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * k) / (2 * k + 1)
                s += term
        return 2 / math.pi * (theta + math.sin(theta) * s)
    s = term = 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        s += term
    return math.sin(theta) * s


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided critical value t such that P(|T| <= t) = confidence."""
    if not 0 < confidence < 1 or df < 1:
        raise ValueError(f"need 0 < confidence < 1 and df >= 1, got {confidence}, {df}")
    if df > _NORMAL_DF:
        return NormalDist().inv_cdf((1 + confidence) / 2)
    lo, hi = 0.0, 1.0
    while _t_two_sided_cdf(hi, df) < confidence:
        lo, hi = hi, hi * 2
    for _ in range(100):  # bisection: the cdf is monotone, 100 halvings is exact enough
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_cdf(mid, df) < confidence else (lo, mid)
    return (lo + hi) / 2


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: well-behaved near 0 and 1, unlike Wald."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the edges
    return low, 1.0 if successes == n else min(1.0, centre + half)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with a Student t interval; one value gives a point (no spread known)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = t_quantile(confidence, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, mid_p: bool = False) -> float:
    """Exact two-sided McNemar p-value for two models scored on the same test images.

    Only the discordant images (one right, the other wrong) carry information, and
    under "no difference" each falls either way with probability 1/2. Exact integer
    arithmetic keeps it valid for 10,000 images; ``mid_p`` is less conservative.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired predictions differ in shape: {a.shape} vs {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    if mid_p:
        tail = 2 * tail - math.comb(n, k)  # doubled, so the final / 2**n below halves it
        return min(1.0, tail / 2**n)
    return min(1.0, 2 * tail / 2**n)


def difference_interval(a: MetricSummary, b: MetricSummary) -> tuple[float, float, float]:
    """(a - b, low, high) from the two intervals by MOVER (Newcombe's for proportions).

    Treats a and b as independent, which is conservative for paired accuracies on
    the same test images (a paired test such as :func:`mcnemar` is sharper).
    """
    d = a.mean - b.mean
    low = d - math.hypot(a.mean - a.low, b.high - b.mean)
    high = d + math.hypot(a.high - a.mean, b.mean - b.low)
    return d, low, high


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one sequence: mean over replicates, sample std, interval, count."""

    mean: float
    std: float  # nan with a single run
    low: float
    high: float
    n: int


@dataclass
class SequenceSummary:
    """All replicates (seeds) of one optimization sequence, reduced to intervals."""

    group_key: tuple[str, ...]
    label: str
    sequence: dict[str, str]
    n_runs: int
    seeds: list[int]
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)

    def mean(self, metric: str) -> float | None:
        """Mean of ``metric``, or None when no run of this sequence measured it."""
        m = self.metrics.get(metric)
        return None if m is None else m.mean


def _summarize_metric(name: str, runs: list[RunRecord], confidence: float) -> MetricSummary | None:
    pairs = [(r, float(r.metrics[name])) for r in runs if name in r.metrics]
    pairs = [(r, v) for r, v in pairs if math.isfinite(v)]
    if not pairs:
        return None
    values = [v for _, v in pairs]
    if len(values) > 1:
        mean, low, high = mean_interval(values, confidence)
        return MetricSummary(mean, float(np.std(values, ddof=1)), low, high, len(values))
    run, v = pairs[0]
    low = high = v
    examples = int(run.metrics.get("test_examples", 0) or 0)
    row = metric(name)
    if row is not None and row.kind == PROPORTION and examples > 0:
        low, high = wilson_interval(round(v * examples), examples, confidence)
    elif row is not None and row.spread is not None:
        low = float(run.metrics.get(row.spread[0], v))
        high = float(run.metrics.get(row.spread[1], v))
    return MetricSummary(v, math.nan, min(low, v), max(high, v), 1)


def summarize(records: list[RunRecord], confidence: float = 0.95) -> list[SequenceSummary]:
    """Group FINISHED runs by sequence (everything but the seed), in first-seen order.

    Replicates are distinct seeds: a run repeating a seed already seen (the same
    config run again, e.g. a cold and a warm sweep ranked together with ``--all``)
    replaces it instead of counting twice, which would fake a zero-width interval.

    Intervals: with several replicates, the Student t interval across replicates for
    every metric (seed-to-seed variation is what separates sequences sharing a test
    set). With one run: a proportion (accuracy) gets the Wilson interval on
    ``test_examples`` images, a timing with a ``spread`` in :mod:`sweep.metrics` its
    [p10, p90] over timing windows, anything else a point: sizes are deterministic.
    """
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    skipped = 0
    for r in records:
        if r.ok:
            groups.setdefault(r.group_key, []).append(r)
        else:
            skipped += 1
    if skipped:
        log.debug("summarize: left out %d run(s) that did not finish", skipped)
    out = []
    for key, runs in groups.items():
        runs = list({r.seed: r for r in runs}.values())  # a re-run of a seed is no replicate
        names = sorted({m for r in runs for m in r.metrics})
        metrics = {n: s for n in names if (s := _summarize_metric(n, runs, confidence))}
        out.append(
            SequenceSummary(
                group_key=key,
                label=runs[0].label,
                sequence=dict(runs[0].sequence),
                n_runs=len(runs),
                seeds=[r.seed for r in runs],
                metrics=metrics,
                run_ids=[r.run_id for r in runs],
            )
        )
    return out


@dataclass
class Winner:
    """The best sequence for one metric, and those that cannot be told apart from it."""

    metric: str
    higher_is_better: bool
    best: SequenceSummary
    tied: list[SequenceSummary]  # excludes ``best``

    @property
    def is_tie(self) -> bool:
        return bool(self.tied)


def pick_winner(
    summaries: list[SequenceSummary],
    metric: str,
    higher_is_better: bool,
    tolerance: float = DETERMINISTIC_TOLERANCE,
) -> Winner:
    """Best mean wins; ties are reported rather than broken by noise.

    Rule: for deterministic metrics (sizes, counts: see :mod:`sweep.metrics`) a sequence
    ties with the best when its mean is within ``tolerance`` (0.5 %) of the best's; for every
    other metric (accuracy, latency) when its interval overlaps the best's. Overlap is
    conservative: it calls ties that a paired test (:func:`mcnemar`) might separate.
    """
    have = [s for s in summaries if metric in s.metrics]
    if not have:
        raise ValueError(f"no sequence measured {metric!r}")
    sign = -1.0 if higher_is_better else 1.0
    best = min(have, key=lambda s: (sign * s.metrics[metric].mean, s.label))
    b = best.metrics[metric]

    def tied(s: SequenceSummary) -> bool:
        m = s.metrics[metric]
        if is_deterministic(metric):
            return abs(m.mean - b.mean) <= tolerance * abs(b.mean)
        return m.low <= b.high and b.low <= m.high

    return Winner(metric, higher_is_better, best, [s for s in have if s is not best and tied(s)])
