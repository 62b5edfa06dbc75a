"""Name the best sequence per dataset for each objective, from the runs in MLflow.

The ranking reads runs back from the store (never from the jobs' memory), so the
same code ranks a sweep that just ended, a resumed one, or any past experiment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sweep.records import SEQUENCE_KEYS, RunRecord

# objective name -> (metric, higher is better, heading)
OBJECTIVES: dict[str, tuple[str, bool, str]] = {
    "smallest": ("tflite_bytes", False, "smallest size"),
    "most_accurate": ("tflite_accuracy", True, "best accuracy"),
    "fastest": ("latency_median_us", False, "fastest inference"),
}


def baseline_of(record: RunRecord, records: list[RunRecord]) -> RunRecord | None:
    """The float32 TFLite of the same dataset/model/train and seed (pretrain and quantize none)."""
    for other in records:
        s = other.sequence
        if (
            other.ok
            and other.seed == record.seed
            and s.get("pretrain") == "none"
            and s.get("quantize") == "none"
            and all(s.get(k) == record.sequence.get(k) for k in ("dataset", "model", "train"))
        ):
            return other
    return None


def relative_metrics(record: RunRecord, records: list[RunRecord]) -> dict[str, float]:
    """Size ratio (times smaller) and accuracy delta (pp) against the float32 baseline."""
    derived: dict[str, float] = {}
    m = record.metrics
    if m.get("keras_bytes") and m.get("tflite_bytes"):
        derived["keras_size_ratio"] = m["keras_bytes"] / m["tflite_bytes"]
    base = baseline_of(record, records)
    if base is not None and m.get("tflite_bytes"):
        derived["size_ratio"] = base.metrics["tflite_bytes"] / m["tflite_bytes"]
        derived["accuracy_delta_pp"] = 100 * (
            m["tflite_accuracy"] - base.metrics["tflite_accuracy"]
        )
    return derived


@dataclass
class Ranking:
    """Winners per dataset and objective, plus what failed."""

    title: str
    winners: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    counted: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "title": self.title,
                "runs": self.counted,
                "winners": self.winners,
                "failed": self.failed,
            },
            indent=2,
            sort_keys=False,
        )


def _entry(record: RunRecord, records: list[RunRecord]) -> dict[str, Any]:
    return {
        "sequence": record.label,
        "components": {k: record.sequence.get(k, "") for k in SEQUENCE_KEYS},
        "seed": record.seed,
        "run_id": record.run_id,
        "metrics": dict(record.metrics),
        "relative": relative_metrics(record, records),
    }


def rank(records: list[RunRecord], title: str = "sweep") -> Ranking:
    finished = [r for r in records if r.ok]
    ranking = Ranking(title=title, counted=len(records))
    ranking.failed = [
        {"sequence": r.label, "status": r.status, "error": r.error, "run_id": r.run_id}
        for r in records
        if not r.ok
    ]
    for dataset in sorted({r.sequence.get("dataset", "") for r in finished}):
        runs = [r for r in finished if r.sequence.get("dataset") == dataset]
        ranking.winners[dataset] = {}
        for objective, (metric, higher, _) in OBJECTIVES.items():
            scored = [r for r in runs if metric in r.metrics]
            if not scored:
                continue
            best = (max if higher else min)(scored, key=lambda r, m=metric: r.metrics[m])
            ranking.winners[dataset][objective] = _entry(best, runs)
    return ranking


def _figures(entry: dict[str, Any]) -> str:
    m, rel = entry["metrics"], entry["relative"]
    parts = [
        f"{m['tflite_bytes'] / 1000:.1f} KB (gzip {m.get('tflite_gzip_bytes', 0) / 1000:.1f} KB)",
        f"accuracy {100 * m['tflite_accuracy']:.2f}%",
        f"latency {m['latency_median_us']:.1f} µs",
    ]
    if "size_ratio" in rel:
        parts.append(
            f"{rel['size_ratio']:.2f}× smaller, {rel['accuracy_delta_pp']:+.2f} pp vs float32"
        )
    return ", ".join(parts)


def render_text(ranking: Ranking) -> str:
    """The terminal and Markdown view: one line per dataset and objective."""
    lines = [
        f"## Ranking: {ranking.title}",
        "",
        f"{ranking.counted} runs, {len(ranking.failed)} failed.",
        "",
    ]
    for dataset, winners in ranking.winners.items():
        lines += [f"### {dataset}", "", "| objective | sequence | figures |", "| --- | --- | --- |"]
        for objective, entry in winners.items():
            heading = OBJECTIVES[objective][2]
            lines.append(f"| {heading} | {entry['sequence']} | {_figures(entry)} |")
        lines.append("")
    if ranking.failed:
        lines += ["### Failed sequences", ""]
        lines += [
            f"- {f['sequence']} ({f['status']}): {f['error'] or 'no error recorded'}"
            for f in ranking.failed
        ]
        lines.append("")
    return "\n".join(lines)
