"""Rank a sweep and publish it: terminal, files in the sweep folder, the parent MLflow run.

:func:`rank_sweep` is the one ranking step, used by the end-of-sweep callback and
by ``sweep-rank``.

Files: ``ranking.md`` / ``ranking.json`` (winners, ties, exclusions, failures),
``tradeoffs.png`` (size vs accuracy, latency as colour, Pareto front
highlighted) and ``reproduction.md`` (our figures beside the reference study's
claims). Runs on the Pareto front get the tag ``pareto_front=true``. On a microcontroller
target, each winner's firmware bundle is copied to ``winners/<dataset>/<objective>/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from sweep.pipeline.context import INVALID_JOB_FILE
from sweep.ranking.bundles import copy_winner_bundles
from sweep.ranking.plot import plot_tradeoffs
from sweep.ranking.rank import Ranking, rank, render_text
from sweep.ranking.reproduction import reproduction_report
from sweep.ranking.run_records import RunRecord
from sweep.ranking.store import experiment_records, sweep_records
from sweep.run_settings import RankSettings
from sweep.stores.tracking import Tracker

log = logging.getLogger(__name__)

EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
NOTE = "mlflow.note.content"
_NOTE_LIMIT = 60_000  # well under MLflow's tag value limit


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
        # MLflow 3 opens an experiment of unknown kind on its GenAI traces page, where
        # nothing of a sweep shows: mark it as model training so it opens on the runs.
        tracker.client.set_experiment_tag(tracker.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        if parent_id is not None:
            tracker.log(parent_id, tags=winner_tags(ranking, text))
            tracker.log_artifacts(parent_id, files)
        copy_winner_bundles(tracker, ranking, out_dir)
    return files


def winner_tags(ranking: Ranking, text: str) -> dict[str, str]:
    """The answer on the parent run itself: a tag per winner, the ranking as its description
    (the run page renders ``mlflow.note.content`` as Markdown)."""
    tags = {NOTE: text[:_NOTE_LIMIT]}
    for dataset, winners in ranking.winners.items():
        for objective, entry in winners.items():
            tags[f"winner.{dataset}.{objective}"] = entry["sequence"]
    return tags


def invalid_jobs(sweep_dir: Path) -> list[dict[str, str]]:
    """Jobs of this sweep stopped by a bad setting before any MLflow run was opened."""
    found = []
    for path in sorted(sweep_dir.glob(f"*/{INVALID_JOB_FILE}")):
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
        found.append(
            {
                "sequence": f"job {path.parent.name}: {' '.join(overrides)}",
                "status": "INVALID SETTINGS",
                "error": path.read_text(),
                "run_id": "",
            }
        )
    return found


def rank_sweep(
    tracker: Tracker,
    settings: RankSettings,
    out_dir: Path,
    *,
    parent_id: str | None = None,
    sweep_dir: Path | None = None,
    title: str | None = None,
) -> Ranking:
    """Rank one sweep's runs (``parent_id``), or every run of the experiment, and publish.

    ``sweep_dir`` adds the jobs that a bad setting stopped before they opened a run.
    """
    records = sweep_records(tracker, parent_id) if parent_id else experiment_records(tracker)
    ranking = rank(records, title or str(sweep_dir or out_dir), settings)
    if sweep_dir is not None:
        ranking.failed += invalid_jobs(sweep_dir)
    publish(ranking, records, out_dir, tracker, parent_id)
    return ranking
