"""The search's settings: how to search (``hydra.sweeper.*``) and what for (``search.*``).

Checked with the project's one validation style before the first trial is launched, so
``search.max_accuracy_drop=-1`` stops the command with one line and exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sweep.groups.target_defaults import BOARD_ESTIMATE_LATENCY, HOST_TFLM_LATENCY, latency_metric
from sweep.metrics import METRICS
from sweep.settings import ConfigError, Rule, above, at_least, one_of, plain_name, setting

SAMPLERS = ("tpe", "nsga2", "random")


def _known_metric() -> Rule:
    ranked = sorted(name for name, m in METRICS.items() if m.better)
    return Rule(lambda v, _: v in ranked, "a metric with a better direction: " + ", ".join(ranked))


@dataclass
class SweeperSettings:
    """``hydra.sweeper.*``: the budget, the sampler and where the study is kept."""

    n_trials: int = setting(20, at_least(1))  # jobs to run, the reference trial included
    timeout_minutes: float | None = setting(None, above(0))  # no new trial after this long
    n_jobs: int = setting(1, at_least(1))  # trials per batch (a parallel launcher runs a batch)
    sampler: str = setting("tpe", one_of(*SAMPLERS))
    seed: int = setting(0, at_least(0))
    n_startup_trials: int = setting(10, at_least(0))  # random trials before TPE models the space
    max_failures_in_a_row: int = setting(5, at_least(1))  # then stop: the setup, not a trial, fails
    study_name: str = setting("search", plain_name())
    storage: str | None = None  # null: a journal file in the sweep folder (resumable)
    # Multi-fidelity (sweep.search.fidelity): every trial first trains rung_epochs of the
    # train.epochs schedule; only promising ones (the promotion rule there) train the whole
    # schedule, and only those are judged against the accuracy constraint. null: one rung.
    rung_epochs: int | None = setting(None, at_least(1))
    rung_reach_pp: float = setting(1.0, at_least(0))  # slack on top of max_accuracy_drop at rung 0


@dataclass
class SearchSettings:
    """``search.*``: the constraints a trial must meet to count as a solution.

    ``require_target``: the model runs on the target's tflite-micro (``mcu_runs`` = 1)
    and fits its flash and RAM (``fits_target`` = 1). ``max_accuracy_drop``: its
    ``tflite_accuracy`` is at most this many percentage points below the reference
    trial's (the experiment's base config, run first). ``latency_metric`` is the
    latency objective (used by the experiment's ``objective`` list); board_search.yaml
    defaults it to the board estimate where the target emulates its CPU
    (:func:`sweep.groups.target_defaults.latency_metric`).
    """

    max_accuracy_drop: float | None = setting(None, at_least(0))
    require_target: bool = False
    reference: bool = False  # run the base config as the first trial
    latency_metric: str = setting(HOST_TFLM_LATENCY, _known_metric())


def directions(objective: str | list) -> list[str]:
    """minimize / maximize per objective, from the metrics table."""
    names = [objective] if isinstance(objective, str) else list(objective)
    out = []
    for name in names:
        row = METRICS.get(name)
        if row is None or row.better is None:
            raise ConfigError(
                f"objective={name!r} is not valid for a search: expected metrics with a better "
                "direction (see `python -m sweep.metrics`)."
            )
        out.append("maximize" if row.higher_is_better else "minimize")
    return out


def check_together(search: SearchSettings, target_is_board: bool) -> None:
    """Rules that involve more than one setting."""
    if search.max_accuracy_drop is not None and not search.reference:
        raise ConfigError(
            f"search.max_accuracy_drop={search.max_accuracy_drop:g} is not valid without "
            "search.reference=true: the drop is measured against the reference trial."
        )
    if search.require_target and not target_is_board:
        raise ConfigError(
            "search.require_target=true is not valid with target=host: pick a board, "
            "e.g. target=nano33_ble_sense."
        )


def check_latency_metric(search: SearchSettings, target: Mapping[str, Any]) -> None:
    """The board estimate as the latency objective needs a target that emulates its CPU:
    elsewhere no trial would measure it, and every one would fail."""
    if search.latency_metric == BOARD_ESTIMATE_LATENCY and latency_metric(target) != (
        BOARD_ESTIMATE_LATENCY
    ):
        raise ConfigError(
            f"search.latency_metric={BOARD_ESTIMATE_LATENCY} is not valid with "
            f"target={target.get('name', '?')}: its checks do not emulate the board's CPU "
            f"(target.emulate=false, or a CPU without an emulator); use {HOST_TFLM_LATENCY}."
        )


def rungs_in_use(rung_epochs: int | None, epochs: int) -> int | None:
    """The rung-0 schedule, or None for one rung: rungs pay only when rung 0 is shorter
    than the whole schedule (a search with ``train.epochs=1`` trains every trial in full)."""
    return rung_epochs if rung_epochs is not None and rung_epochs < epochs else None


def check_rungs(sweeper: SweeperSettings, search: SearchSettings, searched: Iterable[str]) -> None:
    """Rungs need a reference (reach is judged against its rung-0 accuracy) and a schedule
    that is not itself a searched knob."""
    if sweeper.rung_epochs is None:
        return
    where = f"hydra.sweeper.rung_epochs={sweeper.rung_epochs}"
    if not search.reference:
        raise ConfigError(
            f"{where} is not valid without search.reference=true: promotion compares a "
            "trial's short-schedule accuracy with the reference's."
        )
    if "train.epochs" in searched:
        raise ConfigError(f"{where} is not valid while train.epochs is searched: the rungs set it.")
