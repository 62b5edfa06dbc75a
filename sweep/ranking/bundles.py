"""The winners' firmware bundles, copied into the sweep folder: the answer, ready to flash.

A microcontroller run keeps its ``bundle/`` (the model as a C array, the arena size, the
operator resolver) as an MLflow artifact. Whoever asked "which sequence fits my board"
wants the winner's bundle next, so the ranking step puts each winner's bundle at
``<sweep folder>/winners/<dataset>/<objective>/bundle/``, with ``winner.json`` saying which
run and sequence it is. Runs without a bundle (a host target) are skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from sweep.ranking.rank import Ranking
from sweep.stores.tracking import Tracker

log = logging.getLogger(__name__)

BUNDLE = "bundle"
WINNERS = "winners"


def _bundle_of(tracker: Tracker, run_id: str, into: Path) -> Path | None:
    if not any(a.path == BUNDLE for a in tracker.client.list_artifacts(run_id)):
        return None
    return Path(tracker.client.download_artifacts(run_id, BUNDLE, str(into)))


def copy_winner_bundles(tracker: Tracker, ranking: Ranking, out_dir: Path) -> list[Path]:
    """Each winner's bundle under ``out_dir/winners/<dataset>/<objective>/``; the folders."""
    folders = []
    with tempfile.TemporaryDirectory(prefix="sweep-bundles-") as scratch:
        for dataset, winners in ranking.winners.items():
            for objective, entry in winners.items():
                run_id = next(iter(entry.get("run_ids") or []), None)
                if run_id is None:
                    continue
                bundle = _bundle_of(tracker, run_id, Path(scratch) / run_id)
                if bundle is None:
                    continue
                folder = out_dir / WINNERS / dataset / objective
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(bundle, folder / BUNDLE)
                about = {"sequence": entry.get("sequence"), "run_id": run_id}
                (folder / "winner.json").write_text(json.dumps(about, indent=1))
                folders.append(folder)
    if folders:
        log.info("the winners' firmware bundles: %s", out_dir / WINNERS)
    return folders
