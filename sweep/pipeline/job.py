"""One job: one optimization sequence, trained, optimized, converted, measured, logged.

``run(cfg)`` is a pure function of the composed config (tests call it
directly); ``sweep.__main__`` is the thin Hydra wrapper around it.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep import strict_json
from sweep.backend import limit_threads
from sweep.checks import SCOPE_TAG
from sweep.groups import GROUPS
from sweep.groups.model import provenance_of
from sweep.pipeline import context
from sweep.pipeline.components import Components, instantiate_components
from sweep.pipeline.heap import settle_before_job
from sweep.pipeline.sequence import load_dataset, measure_sequence
from sweep.redact import redact, redact_tree
from sweep.stores import memos
from sweep.stores.fingerprints import digest
from sweep.stores.memos import sweep_dict
from sweep.stores.stage_cache import library_versions
from sweep.stores.tracking import (
    CONFIG_HASH,
    ROLE,
    SETTINGS_TAG,
    SWEEP_ID,
    TOTAL_JOBS,
    Tracker,
    flatten,
)

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a job measured, and the run it was recorded in."""

    run_id: str
    metrics: dict[str, float]


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config without Hydra's own block, resolved."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("hydra", None)
    return tree


_SWEEPS: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = sweep_dict()
"""(store, sweep id) -> (parent run, finished child per config hash), read once per worker
process: what finished before this process started is what a resume must skip."""


def _sweep_state(tracker: Tracker, sweep_id: str) -> tuple[Any, dict[str, Any]]:
    key = (tracker.uri, sweep_id)
    if key not in _SWEEPS:
        parent = tracker.find_parent(sweep_id)
        finished = {}
        if parent is not None:
            for run in tracker.children(parent.info.run_id):
                if run.info.status == "FINISHED":
                    finished[run.data.tags.get(CONFIG_HASH)] = run
        _SWEEPS[key] = (parent, finished)
    return _SWEEPS[key]


def _run_tags(
    parts: Components,
    cfg: DictConfig,
    where: context.JobContext,
    config_hash: str,
    parent_id: str | None,
) -> dict[str, str]:
    tags = {
        ROLE: "child" if parent_id else "single",
        CONFIG_HASH: config_hash,
        "sequence": parts.label,
        "seed": str(cfg.seed),
        "target": str(parts.target.name),
        SCOPE_TAG: parts.target.scope,
        SETTINGS_TAG: where.settings,
        **{f"sequence.{k}": v for k, v in parts.sequence.items()},
        **{f"version.{k}": v for k, v in library_versions().items()},
        **provenance_of(parts.model),  # e.g. model.sha256 of a model file
    }
    if where.sweep_id:
        tags.update({SWEEP_ID: where.sweep_id, "sweep.job": str(where.job_num)})
    return tags


def run_name(parts: Components, where: context.JobContext, parent: Any) -> str:
    """The sequence, and in a sweep the settings of this job that vary within it (the
    parent run holds those every job shares): two runs differing only in ``model.filters``
    must not carry the same name in the MLflow UI."""
    fixed = parent.data.tags.get(context.FIXED_SETTINGS_TAG) if parent is not None else None
    if fixed is None:  # a single run, or a sweep started before the tag existed
        return parts.label
    # The parent's tag was recorded redacted: compare in that form, or a password in a
    # setting every job shares (tracking.uri) would look like a setting of this job.
    mine = redact(context.knob_settings(list(where.overrides), GROUPS, seed=True))
    return context.named(parts.label, context.distinct_settings(mine, set(fixed.split())))


def _summary(parts: Components, metrics: dict[str, float], tags: dict[str, str]) -> str:
    text = (
        f"{metrics['tflite_bytes']:.0f} B (gzip {metrics['tflite_gzip_bytes']:.0f} B), "
        f"accuracy {100 * metrics['tflite_accuracy']:.2f}%, "
        f"latency {metrics['latency_median_us']:.1f} µs"
    )
    checks = parts.target.summary(metrics, tags)
    return f"{text}; {checks}" if checks else text


def _is_artifact(path: Path) -> bool:
    """The job's own files: not its log, nor Hydra's ``.hydra/`` copy of the command line
    and config (unredacted: ``config.yaml`` is the redacted one)."""
    return not path.name.endswith(".log") and path.name != ".hydra"


def run(cfg: DictConfig, out_dir: Path | None = None) -> Outcome:
    """Run one sequence and record it as one MLflow run (a child run in a sweep).

    Settings are validated (by instantiating every component) before any data
    is loaded, and the data is read and checked before any run is opened. In a
    sweep, a sequence whose config already has a finished run under the same
    parent is not run again: that is how an interrupted sweep resumes.
    """
    settle_before_job()
    where = context.current(GROUPS)
    memos.enter_sweep(where.sweep_id)
    parts = instantiate_components(cfg)
    limit_threads(cfg.threads)
    load_dataset(parts)  # read and checked now, with the model: a UserError leaves no run behind
    tree = job_config(cfg)
    config_hash = digest(tree)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, bool(cfg.allow_outside_outputs))

    parent, finished = _sweep_state(tracker, where.sweep_id) if where.sweep_id else (None, {})
    parent_id = parent.info.run_id if parent else None
    if parent is not None:
        total = parent.data.tags.get(TOTAL_JOBS, "?")
        where = dataclasses.replace(where, total=int(total) if total.isdigit() else None)
        if (done := finished.get(config_hash)) is not None:
            log.info(
                "%s %s: already finished in run %s, skipping",
                where.progress,
                parts.label,
                done.info.run_id,
            )
            return Outcome(done.info.run_id, dict(done.data.metrics))

    name = run_name(parts, where, parent)
    tags = _run_tags(parts, cfg, where, config_hash, parent_id)
    run_id = tracker.start_run(name, tags, parent_id)
    log.info("%s %s (run %s)", where.progress, name, run_id)
    out_dir = out_dir or Path(tempfile.mkdtemp(prefix="sweep-job-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        tracker.log(run_id, params=flatten(tree))
        shown = OmegaConf.create(redact_tree(tree))  # no credential in an artifact
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(shown))
        metrics, target_tags = measure_sequence(parts, cfg, out_dir)
        tracker.log(run_id, metrics=metrics, tags=target_tags)
        (out_dir / "metrics.json").write_text(strict_json.dumps(metrics, indent=1, sort_keys=True))
        artifacts = sorted(p for p in out_dir.iterdir() if _is_artifact(p))
        tracker.log_artifacts(run_id, artifacts)
    except BaseException as error:
        tracker.fail(run_id, error)
        raise
    tracker.finish(run_id)
    log.info("%s done: %s", where.progress, _summary(parts, metrics, target_tags))
    return Outcome(run_id, metrics)
