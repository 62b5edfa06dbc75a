"""Our measurements beside the reference study's published claims, with verdicts.

A claim such as "+0.27 pp more accurate" is only worth repeating if it stands out
of the noise, so each claim gets a verdict from the intervals and ties of
:mod:`sweep.ranking.stats` rather than from comparing two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.ranking.pareto import BYTES_PER_KB, baseline_key, is_float_baseline
from sweep.ranking.run_records import RunRecord
from sweep.ranking.stats import (
    MetricSummary,
    SequenceSummary,
    difference_interval,
    pick_winner,
    summarize,
)

SUPPORTED, CONTRADICTED, NOISE = "supported", "contradicted", "cannot tell apart from noise"
MISSING = "not in this sweep"


@dataclass(frozen=True)
class Claim:
    """A published "this sequence wins on this metric" statement."""

    name: str
    published: str
    sequence: dict[str, str]  # model/train/pretrain/quantize; the steps it names are on
    metric: str
    higher_is_better: bool


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "a. smallest model",
        "22.5 KB, 12.06× smaller than the Keras .h5 (integer with float fallback)",
        {"model": "cnn", "train": "graph", "pretrain": "none", "quantize": "int8_fallback"},
        "tflite_bytes",
        False,
    ),
    # Before int8_fallback existed, claim a was compared with dynamic range (int8 weights,
    # float activations): a different conversion, kept as its own row.
    Claim(
        "a′. smallest, as dynamic range",
        "22.5 KB (claim a, read as dynamic-range quantization)",
        {"model": "cnn", "train": "graph", "pretrain": "none", "quantize": "dynamic_range"},
        "tflite_bytes",
        False,
    ),
    Claim(
        "b. most accurate",
        "best accuracy of all sequences",
        {"model": "cnn", "train": "graph", "pretrain": "none", "quantize": "int8"},
        "tflite_accuracy",
        True,
    ),
    Claim(
        "c. fastest inference",
        "0.06 ms per image",
        {"model": "separable_cnn", "train": "fit", "pretrain": "none", "quantize": "float16"},
        "latency_median_us",
        False,
    ),
)
MOST_ACCURATE = CLAIMS[2]
# Claim b's gain of the integer-only model over the float model, per dataset.
PUBLISHED_GAIN_PP = {"fashion_mnist": 0.27, "mnist": 0.13}


@dataclass(frozen=True)
class ClaimCheck:
    """One row of the claims table."""

    claim: str
    dataset: str
    published: str
    measured: str
    winner: str
    verdict: str


def _name(s: SequenceSummary | Claim) -> str:
    q = s.sequence
    return f"{q.get('model')} · {q.get('train')} · {q.get('pretrain')} → {q.get('quantize')}"


def _find(rows: list[SequenceSummary], sequence: dict[str, str]) -> SequenceSummary | None:
    return next((s for s in rows if all(s.sequence.get(k) == v for k, v in sequence.items())), None)


def _interval(m: MetricSummary | None, scale: float = 1.0, digits: int = 2) -> str:
    if m is None:
        return "—"
    text = f"{m.mean * scale:.{digits}f}"
    if m.high > m.low:
        text += f" [{m.low * scale:.{digits}f}, {m.high * scale:.{digits}f}]"
    return text


def _figure(s: SequenceSummary, metric: str) -> str:
    m = s.metrics.get(metric)
    if metric == "tflite_bytes":
        text = _interval(m, 1 / BYTES_PER_KB) + " KB"
        keras = s.mean("keras_bytes")
        return text + (f"; {keras / m.mean:.2f}× smaller than Keras .h5" if keras and m else "")
    if metric == "latency_median_us":
        ms = f" = {m.mean / 1000:.4f} ms" if m else ""
        return _interval(m, 1, 1) + " µs" + ms
    return _interval(m, 100) + " %"


def _rank_check(claim: Claim, dataset: str, rows: list[SequenceSummary]) -> ClaimCheck:
    """Supported: the claimed sequence wins outright; noise: it ties with the winner."""
    winner = pick_winner(rows, claim.metric, claim.higher_is_better)
    published = f"{_name(claim)}: {claim.published}"
    won = f"{_name(winner.best)}: {_figure(winner.best, claim.metric)}"
    if winner.is_tie:
        won += f" (tied with {len(winner.tied)}: {'; '.join(_name(s) for s in winner.tied)})"
    claimed = _find(rows, {"dataset": dataset, **claim.sequence})
    if claimed is None or claim.metric not in claimed.metrics:
        return ClaimCheck(claim.name, dataset, published, MISSING, won, MISSING)
    contenders = [winner.best.group_key, *(s.group_key for s in winner.tied)]
    if claimed.group_key not in contenders:
        verdict = CONTRADICTED
    else:
        verdict = NOISE if winner.is_tie else SUPPORTED
    measured = f"{_name(claimed)}: {_figure(claimed, claim.metric)}"
    return ClaimCheck(claim.name, dataset, published, measured, won, verdict)


def _gain_check(dataset: str, rows: list[SequenceSummary]) -> ClaimCheck:
    """Integer-only minus float accuracy; supported only if its interval excludes 0."""
    pp = PUBLISHED_GAIN_PP.get(dataset)
    gain = f"+{pp:.2f} pp" if pp is not None else "a gain (no figure published)"
    published = f"{_name(MOST_ACCURATE)} vs its float model: {gain}"
    name = "b. gain over float model"
    quant = _find(rows, {"dataset": dataset, **MOST_ACCURATE.sequence})
    base = None
    if quant is not None:
        base = next(
            (
                s
                for s in rows
                if is_float_baseline(s.sequence)
                and baseline_key(s.sequence) == baseline_key(quant.sequence)
            ),
            None,
        )
    a = quant.metrics.get("tflite_accuracy") if quant else None
    b = base.metrics.get("tflite_accuracy") if base else None
    if a is None or b is None:
        return ClaimCheck(name, dataset, published, MISSING, "—", MISSING)
    d, low, high = (100 * v for v in difference_interval(a, b))
    verdict = SUPPORTED if low > 0 else CONTRADICTED if high < 0 else NOISE
    measured = (
        f"{d:+.2f} pp [{low:+.2f}, {high:+.2f}] "
        f"(int8 {_interval(a, 100)} % vs float32 {_interval(b, 100)} %)"
    )
    return ClaimCheck(name, dataset, published, measured, "int8 − float32 difference", verdict)


def check_claims(records: list[RunRecord], confidence: float = 0.95) -> list[ClaimCheck]:
    """Every claim for every dataset in ``records`` (finished runs only)."""
    summaries = summarize(records, confidence)
    checks = []
    for dataset in sorted({s.sequence.get("dataset", "") for s in summaries}):
        rows = [s for s in summaries if s.sequence.get("dataset", "") == dataset]
        for claim in CLAIMS:
            if any(claim.metric in s.metrics for s in rows):
                checks.append(_rank_check(claim, dataset, rows))
            else:
                checks.append(
                    ClaimCheck(
                        claim.name,
                        dataset,
                        f"{_name(claim)}: {claim.published}",
                        MISSING,
                        "—",
                        MISSING,
                    )
                )
            if claim is MOST_ACCURATE:
                checks.append(_gain_check(dataset, rows))
    return checks


def _measured_table(rows: list[SequenceSummary]) -> list[str]:
    lines = [
        "| sequence | runs | TFLite KB | gzip KB | Keras .h5 / TFLite | "
        "TFLite accuracy % | latency median µs |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(rows, key=lambda s: s.mean("tflite_bytes") or float("inf")):
        size, keras = s.mean("tflite_bytes"), s.mean("keras_bytes")
        ratio = f"{keras / size:.2f}×" if size and keras else "—"
        m, kb = s.metrics.get, 1 / BYTES_PER_KB
        lines.append(
            f"| {_name(s)} | {s.n_runs} | {_interval(m('tflite_bytes'), kb)} | "
            f"{_interval(m('tflite_gzip_bytes'), kb)} | {ratio} | "
            f"{_interval(m('tflite_accuracy'), 100)} | {_interval(m('latency_median_us'), 1, 1)} |"
        )
    return lines


def reproduction_report(records: list[RunRecord], confidence: float = 0.95) -> str:
    """Markdown: how to read it, the claims table with verdicts, our full table."""
    pct = f"{confidence:.0%}"
    failed = sum(not r.ok for r in records)
    lines = [
        "# Reproduction of the reference study",
        "",
        f"- Sizes in KB with 1 KB = 1000 bytes. Intervals are {pct}: with one run, Wilson "
        "on the test images for accuracy and the p10–p90 spread of timing windows for "
        "latency; with several seeds, Student t across seeds.",
        "- A claim names the steps it applies; the steps it does not name are off "
        "(model `cnn`, train `fit`, pretrain `none`).",
        "- The float model: same dataset, model and train, pretrain `none`, quantize `none` "
        "(float32 TFLite), measured on the same test images.",
        "- Ties: sizes within 0.5 %; accuracy and latency when intervals overlap. "
        f"**{SUPPORTED}**: the claimed sequence wins and nothing ties with it; "
        f"**{CONTRADICTED}**: another sequence wins and the claimed one is not tied with it; "
        f"**{NOISE}**: it ties with the winner (for the gain: the interval contains 0).",
        "- Absolute KB and ms depend on the TensorFlow version and the machine; the "
        "verdict judges which sequence wins.",
    ]
    if failed:
        lines.append(f"- {failed} run(s) did not finish and are left out.")
    checks = check_claims(records, confidence)
    if not checks:
        return "\n".join([*lines, "", "No finished runs: nothing to compare.", ""])
    lines += [
        "",
        "## Claims",
        "",
        "| claim | dataset | published | measured here | winner here | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c.claim} | {c.dataset} | {c.published} | {c.measured} | {c.winner} | {c.verdict} |"
        for c in checks
    ]
    summaries = summarize(records, confidence)
    lines += ["", "## Measured", ""]
    for dataset in sorted({c.dataset for c in checks}):
        rows = [s for s in summaries if s.sequence.get("dataset", "") == dataset]
        lines += [f"### {dataset}", "", *_measured_table(rows), ""]
    return "\n".join(lines)
