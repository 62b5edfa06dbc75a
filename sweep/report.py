"""Publish a ranking: terminal, files in the sweep folder, and the parent MLflow run.

Files: ``ranking.md`` / ``ranking.json`` (winners, ties, exclusions, failures),
``tradeoffs.png`` (size vs accuracy, latency as colour, Pareto front
highlighted) and ``reproduction.md`` (our figures beside the reference study's
claims). Runs on the Pareto front get the tag ``pareto_front=true``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sweep.plot import plot_tradeoffs
from sweep.ranking import Ranking, render_text
from sweep.records import RunRecord
from sweep.reproduction import reproduction_report
from sweep.tracking import Tracker

log = logging.getLogger(__name__)


def publish(
    ranking: Ranking,
    records: list[RunRecord],
    out_dir: Path,
    tracker: Tracker | None = None,
    parent_id: str | None = None,
) -> list[Path]:
    """Write the report files, show the ranking, and attach everything to the parent run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_text(ranking)
    files = [out_dir / "ranking.md", out_dir / "ranking.json", out_dir / "reproduction.md"]
    files[0].write_text(text)
    files[1].write_text(ranking.to_json())
    files[2].write_text(reproduction_report(records))
    if ranking.summaries:
        front = {
            s.group_key
            for s in ranking.summaries
            if any(rid in ids for ids in ranking.fronts.values() for rid in s.run_ids)
        }
        files.append(
            plot_tradeoffs(ranking.summaries, front, out_dir / "tradeoffs.png", ranking.title)
        )
    log.info("\n%s", text)
    log.info("ranking, trade-off plot and reproduction report written to %s", out_dir)
    if tracker is not None:
        for run_ids in ranking.fronts.values():
            for run_id in run_ids:
                tracker.log(run_id, tags={"pareto_front": "true"})
        if parent_id is not None:
            tracker.log_artifacts(parent_id, files)
    return files
