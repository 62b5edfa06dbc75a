"""Re-rank a past sweep, or a whole MLflow experiment, from the store.

sweep-rank --sweep-dir outputs/multirun/2026-11-24/10-00-00
sweep-rank --all --out outputs/ranking-all
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sweep.errors import exits_on_error
from sweep.pipeline.context import sweep_id_for
from sweep.ranking.report import rank_sweep
from sweep.ranking.store import experiment_records
from sweep.run_settings import RankSettings
from sweep.settings import ConfigError, build
from sweep.stores.paths import outputs_root
from sweep.stores.tracking import Tracker


def _number_or_none(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def _limits(pairs: list[str]) -> dict[str, float]:
    limits = {}
    for pair in pairs:
        name, sep, bound = pair.partition("=")
        try:
            limits[name] = float(bound)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--limit {pair!r} is not valid: expected METRIC=NUMBER.")
    return limits


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sweep-rank", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--sweep-dir", type=Path, help="a sweep's folder (hydra.sweep.dir)")
    which.add_argument("--all", action="store_true", help="every run of the experiment")
    parser.add_argument("--experiment", default="sweep", help="MLflow experiment (default: sweep)")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: the sqlite database under outputs/)",
    )
    parser.add_argument(
        "--allow-outside-outputs",
        action="store_true",
        help="accept an experiment whose artifacts are kept outside the outputs folder",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where ranking.md/json go (default: the sweep folder, or outputs/ranking for --all)",
    )
    parser.add_argument(
        "--max-size-kb",
        type=float,
        default=None,
        help="budget: best accuracy among models at most this big (1 KB = 1000 B)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=_number_or_none,
        default=1.0,
        help="accuracy floor: smallest/fastest/least RAM only among sequences within this many "
        "percentage points of the best accuracy (default 1.0; 'none' lifts it)",
    )
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="METRIC=BOUND",
        help="budget on any ranked metric (at most, or at least for higher-is-better ones), "
        "e.g. --limit ram_bytes_needed=65536; repeatable",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        with exits_on_error(lambda line: print(f"error: {line}", file=sys.stderr)):
            return _rank_command(args)
    except SystemExit as stop:
        return int(stop.code or 0)


def _rank_command(args: argparse.Namespace) -> int:
    limits = {"max_size_kb": args.max_size_kb, "max_accuracy_drop": args.max_accuracy_drop}
    settings = build("rank", RankSettings, {**limits, "limits": _limits(args.limit)})
    tracker = Tracker(args.tracking_uri, args.experiment, args.allow_outside_outputs)
    parent_id, out = None, args.out or outputs_root() / "ranking"
    if args.sweep_dir is not None:
        parent = tracker.find_parent(sweep_id_for(args.sweep_dir))
        if parent is None:
            raise ConfigError(
                f"no sweep recorded for {args.sweep_dir} in {tracker.shown_uri} "
                f"(experiment {args.experiment!r})"
            )
        parent_id, out = parent.info.run_id, args.out or args.sweep_dir
    elif not experiment_records(tracker):
        raise ConfigError(f"no runs in experiment {args.experiment!r} at {tracker.shown_uri}")
    title = str(args.sweep_dir or f"experiment {args.experiment}")
    ranking = rank_sweep(
        tracker, settings, out, parent_id=parent_id, sweep_dir=args.sweep_dir, title=title
    )
    return 1 if ranking.failed else 0


if __name__ == "__main__":
    sys.exit(main())
