"""Publish a ranking: terminal, ranking.md / ranking.json, and the parent MLflow run."""

from __future__ import annotations

import logging
from pathlib import Path

from sweep.ranking import Ranking, render_text
from sweep.tracking import Tracker

log = logging.getLogger(__name__)


def publish(
    ranking: Ranking, out_dir: Path, tracker: Tracker | None = None, parent_id: str | None = None
) -> list[Path]:
    """Write the report files, show them, and attach them to the parent run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_text(ranking)
    files = [out_dir / "ranking.md", out_dir / "ranking.json"]
    files[0].write_text(text)
    files[1].write_text(ranking.to_json())
    log.info("\n%s", text)
    log.info("ranking written to %s", out_dir)
    if tracker is not None and parent_id is not None:
        tracker.log_artifacts(parent_id, files)
    return files
