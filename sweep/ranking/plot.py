"""The trade-off picture: size vs accuracy, latency as colour, Pareto front ringed.

A ranking table names winners per objective; this figure shows what one gives up
for another, which is what a person choosing a sequence for a device needs.
matplotlib is imported lazily with the Agg backend so that importing the package
(and running headless jobs) never needs a display.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path

from sweep.ranking.pareto import BYTES_PER_KB, DEFAULT_OBJECTIVES, pareto_front
from sweep.ranking.stats import SequenceSummary

log = logging.getLogger(__name__)

ANNOTATE_BELOW = 30  # more labels than this overlap into noise
_SHORT = {
    "separable_cnn": "sep",
    "dynamic_range": "dyn",
    "float16": "f16",
    "pruning": "prune",
}


def short_label(sequence: Mapping[str, str]) -> str:
    """Compact sequence name for annotations, e.g. ``sep·graph·qat→int8`` (no pretrain: omitted)."""
    parts = [
        _SHORT.get(sequence.get(k, "?"), sequence.get(k, "?"))
        for k in ("model", "train", "pretrain")
        if sequence.get(k) != "none"
    ]
    quantize = sequence.get("quantize", "?")
    return "·".join(parts) + "→" + ("f32" if quantize == "none" else _SHORT.get(quantize, quantize))


def plot_tradeoffs(
    summaries: list[SequenceSummary],
    front: Collection[tuple[str, ...]] | None,
    out_png: Path,
    title: str,
) -> Path:
    """Write one subplot per dataset to ``out_png`` (PNG, 120 dpi) and return the path.

    ``front``: group keys of the Pareto-optimal sequences; None computes the front
    over size, accuracy and latency per dataset. Sequences without size or accuracy
    cannot be placed and are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if front is None:
        front = {s.group_key for s in pareto_front(summaries, DEFAULT_OBJECTIVES)}
    front = set(front)
    placed = [
        s
        for s in summaries
        if s.mean("tflite_bytes") is not None and s.mean("tflite_accuracy") is not None
    ]
    datasets = sorted({s.sequence.get("dataset", "") for s in placed}) or [""]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 5.2), squeeze=False)
    latencies = [s.mean("latency_median_us") for s in placed]
    known = [v for v in latencies if v is not None]
    vmin, vmax = (min(known), max(known)) if known else (0.0, 1.0)
    annotate = len(placed) < ANNOTATE_BELOW

    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = [s for s in placed if s.sequence.get("dataset", "") == dataset]
        x = [s.mean("tflite_bytes") / BYTES_PER_KB for s in rows]
        y = [100 * s.mean("tflite_accuracy") for s in rows]
        acc = [s.metrics["tflite_accuracy"] for s in rows]
        yerr = [[100 * (a.mean - a.low) for a in acc], [100 * (a.high - a.mean) for a in acc]]
        ax.errorbar(
            x,
            y,
            yerr=yerr,
            fmt="none",
            ecolor="0.7",
            elinewidth=1,
            zorder=1,
            label="accuracy interval",
        )
        colours = [s.mean("latency_median_us") for s in rows]
        scatter = ax.scatter(
            x,
            y,
            c=[vmin if c is None else c for c in colours],
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            s=45,
            edgecolors="0.3",
            linewidths=0.5,
            zorder=2,
        )
        on_front = sorted(
            (xi, yi) for xi, yi, s in zip(x, y, rows, strict=True) if s.group_key in front
        )
        if on_front:
            fx, fy = zip(*on_front, strict=True)
            ax.plot(fx, fy, "-", color="crimson", lw=1.2, zorder=3, label="Pareto front")
            ax.scatter(
                fx, fy, s=160, facecolors="none", edgecolors="crimson", linewidths=1.5, zorder=4
            )
        ax.legend(loc="lower right", fontsize=8)
        if annotate:  # sequences measuring the same share one label instead of overprinting
            labels: dict[tuple[float, float], list[str]] = {}
            for xi, yi, s in zip(x, y, rows, strict=True):
                labels.setdefault((xi, yi), []).append(short_label(s.sequence))
            mid = (min(x) + max(x)) / 2  # right-half labels point left, away from the edge
            for xy, names in labels.items():
                right = xy[0] > mid
                ax.annotate(
                    ", ".join(names),
                    xy,
                    textcoords="offset points",
                    fontsize=7,
                    xytext=(-6 if right else 6, 4),
                    ha="right" if right else "left",
                )
        ax.set_title(dataset or "all runs")
        ax.set_xlabel("TFLite model size (KB, 1 KB = 1000 bytes)")
        ax.set_ylabel("TFLite test accuracy (%)")
        ax.grid(True, alpha=0.3)
        fig.colorbar(scatter, ax=ax, label="latency median (µs)")

    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    log.info("trade-off plot written to %s", out_png)
    return out_png
