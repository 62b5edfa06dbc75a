"""Name the best sequence per dataset for each objective, from the runs in MLflow.

The ranking reads runs back from the store (never from the jobs' memory), so the
same code ranks a sweep that just ended, a resumed one, or any past experiment.
Runs are grouped by sequence (replicate seeds together) and compared with
intervals, so a lead inside the noise is reported as a tie, not as a winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweep import strict_json
from sweep.checks import SCOPE_TAG, exclusions
from sweep.groups import SEQUENCE_KEYS
from sweep.metrics import HOST, MCU, METRICS, Metric, objective_metrics, objectives
from sweep.ranking.pareto import (
    BYTES_PER_KB,
    apply_budget,
    baseline_key,
    float_baselines,
    pareto_front,
)
from sweep.ranking.run_records import RunRecord
from sweep.ranking.stats import SequenceSummary, Winner, pick_winner, summarize
from sweep.run_settings import RankSettings

BUDGET = "within_budget"
ACCURACY = "tflite_accuracy"
ACCURACY_OBJECTIVE = "most_accurate"  # chosen among all sequences: it sets the floor


@dataclass
class Ranking:
    """Winners per dataset and objective, the Pareto front, exclusions and failures."""

    title: str
    settings: RankSettings = field(default_factory=RankSettings)
    winners: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    fronts: dict[str, list[str]] = field(default_factory=dict)  # dataset -> run ids
    excluded: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    floors: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> accuracy floor
    summaries: list[SequenceSummary] = field(default_factory=list)
    counted: int = 0
    target: str | None = None  # the microcontroller the runs were checked against, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "runs": self.counted,
            "sequences": len(self.summaries),
            "budget": self.settings.describe(),
            "target": self.target,
            "accuracy_floor": self.floors,
            "winners": self.winners,
            "pareto_front_run_ids": self.fronts,
            "excluded": self.excluded,
            "failed": self.failed,
        }

    def to_json(self) -> str:
        """Strict JSON: a figure that could not be measured (an interval of one run) is null."""
        return strict_json.dumps(self.to_dict(), indent=2)


def _relative(s: SequenceSummary, sizes: dict, accuracies: dict) -> dict[str, float]:
    """Size ratio (times smaller) and accuracy delta (pp) against the float32 TFLite."""
    out: dict[str, float] = {}
    size, keras_size = s.mean("tflite_bytes"), s.mean("keras_bytes")
    if size and keras_size:
        out["keras_size_ratio"] = keras_size / size
    key = baseline_key(s.sequence)
    if size and key in sizes:
        out["size_ratio"] = sizes[key] / size
    accuracy = s.mean("tflite_accuracy")
    if accuracy is not None and key in accuracies:
        out["accuracy_delta_pp"] = 100 * (accuracy - accuracies[key])
    return out


def _entry(winner: Winner, sizes: dict, accuracies: dict) -> dict[str, Any]:
    s = winner.best
    return {
        "metric": winner.metric,
        "sequence": s.label,
        "components": {k: s.sequence.get(k, "") for k in SEQUENCE_KEYS},
        "runs": s.n_runs,
        "seeds": s.seeds,
        "run_ids": s.run_ids,
        "metrics": {name: vars(m) for name, m in s.metrics.items()},
        "relative": _relative(s, sizes, accuracies),
        "tied_with": [t.label for t in winner.tied],
    }


def _deployable(records: list[RunRecord]) -> tuple[set[tuple], list[dict[str, str]]]:
    """The sequences a deployer may choose, and why others are out: what the target's
    checks said (it does not run, does not fit, its board build disagrees), and in a
    constrained search the infeasible trials."""
    excluded: dict[tuple, dict[str, str]] = {}
    for r in records:
        if r.ok and r.metrics.get("search.feasible") == 0.0:  # a search trial's verdict
            why = r.tags.get("search.reason", "violates a constraint")
            excluded.setdefault(r.group_key, {"sequence": r.label, "reason": f"search: {why}"})
            continue
        reasons = exclusions(r.metrics, r.tags) if r.ok else []
        if reasons:
            excluded.setdefault(r.group_key, {"sequence": r.label, "reason": reasons[0]})
    return set(excluded), list(excluded.values())


def _on_a_board(record: RunRecord) -> bool:
    return record.tags.get(SCOPE_TAG) == MCU or "mcu_runs" in record.metrics


def objective_metric(objective: str, scope: str, rows: list[SequenceSummary]) -> Metric | None:
    """The metric that answers ``objective`` here: the first of the table's rows for this
    scope that any sequence measured (e.g. a board estimate before the host proxy)."""
    for row in objective_metrics(objective, scope):
        if any(row.name in s.metrics for s in rows):
            return row
    return None


def _accuracy_floor(
    rows: list[SequenceSummary], max_drop_pp: float | None
) -> tuple[dict[str, Any] | None, list[SequenceSummary]]:
    """The floor (best accuracy of these rows minus ``max_drop_pp``) and the rows above it."""
    measured = [s for s in rows if s.mean(ACCURACY) is not None]
    if max_drop_pp is None or not measured:
        return None, rows
    reference = max(measured, key=lambda s: (s.mean(ACCURACY), s.label))
    best_accuracy = reference.mean(ACCURACY)
    kept = apply_budget(
        rows, max_accuracy_drop_pp=max_drop_pp, baseline_accuracy=lambda _: best_accuracy
    )
    floor = {
        "reference": reference.label,
        "reference_accuracy": best_accuracy,
        "max_drop_pp": max_drop_pp,
        "floor_accuracy": best_accuracy - max_drop_pp / 100,
        "below": len(rows) - len(kept),
    }
    return floor, kept


def _below_floor(s: SequenceSummary, metric: str, floor: dict[str, Any]) -> dict[str, Any]:
    """The winner without the floor, shown with what it would cost in accuracy."""
    accuracy = s.mean(ACCURACY)
    return {
        "sequence": s.label,
        "run_ids": s.run_ids,
        metric: s.mean(metric),
        "accuracy": accuracy,
        "loss_pp": None if accuracy is None else 100 * (floor["reference_accuracy"] - accuracy),
    }


def rank(
    records: list[RunRecord], title: str = "sweep", settings: RankSettings | None = None
) -> Ranking:
    settings = settings or RankSettings()
    summaries = summarize(records)
    ranking = Ranking(title=title, settings=settings, summaries=summaries, counted=len(records))
    ranking.failed = [
        {"sequence": r.label, "status": r.status, "error": r.error, "run_id": r.run_id}
        for r in records
        if not r.ok
    ]
    not_deployable, ranking.excluded = _deployable(records)
    targets = sorted({r.tags.get("target", "?") for r in records if _on_a_board(r)})
    ranking.target = ", ".join(targets) or None
    scope = MCU if targets else HOST
    sizes = float_baselines(summaries, "tflite_bytes")
    accuracies = float_baselines(summaries, "tflite_accuracy")
    for dataset in sorted({s.sequence.get("dataset", "") for s in summaries}):
        rows = [
            s
            for s in summaries
            if s.sequence.get("dataset") == dataset and s.group_key not in not_deployable
        ]
        floor, above_floor = _accuracy_floor(rows, settings.max_accuracy_drop)
        if floor is not None:
            ranking.floors[dataset] = floor
        winners: dict[str, dict[str, Any]] = {}
        for objective in objectives():
            row = objective_metric(objective, scope, rows)
            if row is None:
                continue
            pool = rows if objective == ACCURACY_OBJECTIVE else above_floor
            if not any(row.name in s.metrics for s in pool):
                continue
            entry = _entry(pick_winner(pool, row.name, row.higher_is_better), sizes, accuracies)
            unconstrained = pick_winner(rows, row.name, row.higher_is_better).best
            if floor is not None and unconstrained.label != entry["sequence"]:
                entry["below_floor"] = _below_floor(unconstrained, row.name, floor)
            winners[objective] = entry
        if settings.has_budget:
            within = apply_budget(above_floor, settings.max_size_kb, limits=settings.limits)
            if within:
                winner = pick_winner(within, ACCURACY, True)
                winners[BUDGET] = _entry(winner, sizes, accuracies)
        ranking.winners[dataset] = winners
        ranking.fronts[dataset] = [rid for s in pareto_front(rows) for rid in s.run_ids]
    return ranking


def _figures(entry: dict[str, Any]) -> str:
    m, rel = entry["metrics"], entry["relative"]
    accuracy = m["tflite_accuracy"]
    parts = [
        f"{m['tflite_bytes']['mean'] / BYTES_PER_KB:.1f} KB"
        f" (gzip {m['tflite_gzip_bytes']['mean'] / BYTES_PER_KB:.1f} KB)",
        f"accuracy {100 * accuracy['mean']:.2f}%"
        f" [{100 * accuracy['low']:.2f}, {100 * accuracy['high']:.2f}]",
        f"latency {m['latency_median_us']['mean']:.1f} µs",
    ]
    for name, row in METRICS.items():
        if row.shown and row.scope == MCU and name in m:
            parts.append(row.shown.format(m[name]["mean"]))
    if "size_ratio" in rel:
        parts.append(f"{rel['size_ratio']:.2f}× smaller than float32")
    if "accuracy_delta_pp" in rel:
        parts.append(f"{rel['accuracy_delta_pp']:+.2f} pp vs float32")
    if entry["runs"] > 1:
        parts.append(f"{entry['runs']} seeds")
    return ", ".join(parts)


def _shorten(labels: list[str], shown: int = 3) -> str:
    """The first few tied sequences; ranking.json keeps them all."""
    if not labels:
        return "—"
    more = len(labels) - shown
    return ", ".join(labels[:shown]) + (f" and {more} more" if more > 0 else "")


def _heading(objective: str, entry: dict[str, Any], ranking: Ranking) -> str:
    if objective == BUDGET:
        return f"best accuracy within budget ({ranking.settings.describe()})"
    heading = METRICS[entry["metric"]].heading
    return f"{heading}, runs and fits {ranking.target}" if ranking.target else heading


def _floor_text(floor: dict[str, Any]) -> str:
    return (
        f"Accuracy floor {100 * floor['floor_accuracy']:.2f}%: within "
        f"{floor['max_drop_pp']:g} pp of the best, {floor['reference']} "
        f"({100 * floor['reference_accuracy']:.2f}%); {floor['below']} sequence(s) below it "
        "are not named smallest, fastest or least RAM (rank.max_accuracy_drop=null lifts it)."
    )


def _below_floor_text(heading: str, entry: dict[str, Any]) -> str:
    below = entry["below_floor"]
    loss = "unknown" if below["loss_pp"] is None else f"{below['loss_pp']:.2f} pp"
    accuracy = "?" if below["accuracy"] is None else f"{100 * below['accuracy']:.2f}%"
    return (
        f"- {heading} without the floor: {below['sequence']}, below the floor "
        f"(accuracy {accuracy}, {loss} under the best)."
    )


def render_text(ranking: Ranking) -> str:
    """The terminal and Markdown view: one row per dataset and objective."""
    lines = [
        f"## Ranking: {ranking.title}",
        "",
        f"{ranking.counted} runs ({len(ranking.summaries)} sequences), "
        f"{len(ranking.failed)} failed, {len(ranking.excluded)} excluded. "
        "Accuracy in brackets: 95% interval. A tie means the lead is inside the noise.",
        "",
    ]
    for dataset, winners in ranking.winners.items():
        lines += [f"### {dataset}", ""]
        if dataset in ranking.floors:
            lines += [_floor_text(ranking.floors[dataset]), ""]
        lines += ["| objective | sequence | figures | tied with |", "| --- | --- | --- | --- |"]
        for objective, entry in winners.items():
            tied = _shorten(entry["tied_with"])
            heading = _heading(objective, entry, ranking)
            lines.append(f"| {heading} | {entry['sequence']} | {_figures(entry)} | {tied} |")
        notes = [
            _below_floor_text(_heading(objective, entry, ranking), entry)
            for objective, entry in winners.items()
            if "below_floor" in entry
        ]
        lines += ["", *notes] if notes else []
        lines.append("")
    for heading, rows in (
        ("Excluded sequences", ranking.excluded),
        ("Failed sequences", ranking.failed),
    ):
        if rows:
            lines += [f"### {heading}", ""]
            lines += [
                f"- {row['sequence']}: {row.get('reason') or row.get('error') or row.get('status')}"
                for row in rows
            ]
            lines.append("")
    return "\n".join(lines)
