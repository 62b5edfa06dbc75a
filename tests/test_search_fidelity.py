"""The multi-fidelity board search (sweep.search.fidelity), the default latency objective per
target, and grids whose jobs run side by side: rules on their own, then real tiny searches
and sweeps in a subprocess, read back from their MLflow store."""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest
from helpers.config import compose, sweep_env
from helpers.processes import Followed
from helpers.sweeps import run_sweep, runs_by_role, seed_store, sweep_command
from omegaconf import OmegaConf

from sweep.metrics import reproducible

# A board search on the subsets: a trial trains 1 epoch at rung 0, 3 in full; no Cortex-M build
# (what is checked here is the search, not the emulator). One epoch on 600 images leaves
# accuracies tens of points apart, so reach is widened to 30 pp: some trials then go on
# and some stop. One trial at a time (the experiment runs two side by side): the rule is
# recomputed below in trial order, and the kill lands in a known trial.
SEARCH = [
    "experiment=board_search",
    "target=nano33_ble_sense",
    "target.emulate=false",
    "train.epochs=3",
    "hydra.sweeper.rung_epochs=1",
    "hydra.sweeper.rung_reach_pp=30",
]
ONE_AT_A_TIME = ["hydra/launcher=basic", "hydra.sweeper.n_jobs=1"]
RUNGS = [*SEARCH, *ONE_AT_A_TIME]


# --- the promotion rule -------------------------------------------------------------------


def _result(trial: int, size: float, latency: float, accuracy: float, fits: bool = True):
    from sweep.search.fidelity import RungResult

    return RungResult(trial, (size, latency, accuracy), accuracy, fits)


DIRECTIONS = ["minimize", "minimize", "maximize"]


def test_promotion_needs_reach_fit_and_no_better_rival_and_the_reference_always_goes_on() -> None:
    from sweep.search.fidelity import decide, reach_line

    line = reach_line(0.90, max_drop_pp=0.5, reach_pp=1.0)  # 1.5 pp below the reference
    assert line == pytest.approx(0.885)
    small = _result(1, 7000, 1.0, 0.89)
    assert decide(small, [], line, DIRECTIONS).promoted
    weak = decide(_result(2, 5000, 0.5, 0.88), [], line, DIRECTIONS)
    assert not weak.promoted and weak.constraints["rung0_reach_pp"] == pytest.approx(0.5)
    assert "0.50 pp below reach (88.50%)" in weak.reason
    # Dominated: another reachable trial is as small, as fast and more accurate at rung 0.
    rival = _result(3, 7000, 1.0, 0.895)
    dominated = decide(small, [rival], line, DIRECTIONS)
    assert not dominated.promoted and "dominated at rung 0 by trial 3" in dominated.reason
    assert dominated.constraints["promoted"] == 1.0
    # A trade-off is no domination: smaller but less accurate, or the trial itself.
    assert decide(small, [_result(4, 6000, 1.0, 0.886), small], line, DIRECTIONS).promoted
    assert not decide(_result(5, 7000, 1.0, 0.95, fits=False), [], line, DIRECTIONS).promoted
    assert decide(weak_reference := _result(0, 24000, 3.0, 0.5), [rival], line, DIRECTIONS,
                  is_reference=True).promoted  # fmt: skip
    assert weak_reference.accuracy < line


def test_rung_zero_trains_the_short_schedule_and_skips_tflite_micro_accuracy_on_a_board() -> None:
    from sweep.search.fidelity import rung0_overrides

    knobs = ["model.filters=8", "train.epochs=10"]
    board = compose(["target=nano33_ble_sense"]).target
    assert rung0_overrides(knobs, 1, board) == [
        "model.filters=8", "train.epochs=1", "target.micro_accuracy=false"
    ]  # fmt: skip
    host = compose([]).target  # no tflite-micro there: nothing to skip
    assert rung0_overrides(knobs, 2, host) == ["model.filters=8", "train.epochs=2"]


def test_a_model_the_board_cannot_hold_is_infeasible_not_failed_without_a_board_estimate() -> None:
    """The board estimate exists only for models the board holds; a model that does not fit
    gets the worst latency, so its constraints, not a failure, rule it out."""
    import math

    from sweep.search.sweeper import Search

    search = Search()
    search.objective = ["tflite_bytes", "mcu_est_latency_ms", "tflite_accuracy"]
    search.directions = DIRECTIONS
    too_big = {"tflite_bytes": 24416.0, "tflite_accuracy": 0.98, "mcu_runs": 1.0,
               "fits_target": 0.0}  # fmt: skip
    assert search._off_the_board(too_big) == [24416.0, math.inf, 0.98]
    assert search._off_the_board({**too_big, "fits_target": 1.0}) is None  # a real failure


def test_a_trial_without_its_objective_names_the_missing_metric_and_why(tmp_path: Path) -> None:
    """A job that finished without the board's figures (the Arm toolchain missing, a refused
    cache folder): the trial's reason names the objective it lacks and the run's own why."""
    from hydra.core.utils import JobReturn, JobStatus
    from mlflow.tracking import MlflowClient

    from sweep.search.sweeper import Search

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("sweep")).info.run_id
    client.log_metric(run_id, "tflite_bytes", 24416.0)
    client.log_metric(run_id, "tflite_accuracy", 0.98)
    search = Search()
    search.objective = ["tflite_bytes", "mcu_est_latency_ms", "tflite_accuracy"]
    search.sweep_dir = tmp_path
    done = JobReturn()
    done.status = JobStatus.COMPLETED
    assert search._failure(0, client.get_run(run_id), done) == (
        "the job recorded no mcu_est_latency_ms"
    )
    client.set_tag(run_id, "mcu_emulation_reason", "arm-none-eabi-gcc is not on PATH")
    assert search._failure(0, client.get_run(run_id), done) == (
        "the job recorded no mcu_est_latency_ms; no board figures: arm-none-eabi-gcc is not on PATH"
    )


# --- the default latency objective --------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [
        (["target=nano33_ble_sense"], "mcu_est_latency_ms"),  # Cortex-M4F, emulated
        (["target=rpi_pico"], "mcu_est_latency_ms"),  # Cortex-M0+, emulated
        (["target=nano33_ble_sense", "target.emulate=false"], "mcu_latency_median_us"),
        (["target=esp32"], "mcu_latency_median_us"),  # Xtensa: no emulator here
        (["target=cortex_m4", "target.checks=[tflite_micro]"], "mcu_latency_median_us"),
        (["target=nano33_ble_sense", "search.latency_metric=mcu_latency_median_us"],
         "mcu_latency_median_us"),
    ],
)  # fmt: skip
def test_the_default_latency_objective_is_the_board_estimate_where_the_target_emulates_its_cpu(
    overrides: list[str], metric: str
) -> None:
    from sweep.groups import target_defaults

    target_defaults.register_resolvers()  # as python -m sweep does
    cfg = compose(["experiment=board_search", *overrides])
    assert cfg.search.latency_metric == metric
    assert list(cfg.objective) == ["tflite_bytes", metric, "tflite_accuracy"]


def test_the_board_estimate_on_a_target_without_one_is_a_bad_setting() -> None:
    from sweep.groups import target_defaults
    from sweep.search.sweeper import check_settings
    from sweep.settings import ConfigError

    target_defaults.register_resolvers()
    cfg = compose(
        ["experiment=board_search", "target=esp32", "search.latency_metric=mcu_est_latency_ms"],
        with_hydra=True,
    )
    raw = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    raw.pop("params")
    with pytest.raises(ConfigError, match="target=esp32: its checks do not emulate"):
        check_settings(raw, cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra.sweeper.rung_epochs=1", "search.reference=false", "search.max_accuracy_drop=null"],
         "hydra.sweeper.rung_epochs=1 is not valid without search.reference=true"),
        (["hydra.sweeper.rung_epochs=1", "train.epochs=2,3"], "while train.epochs is searched"),
        (["search.latency_metric=mcu_est_latency_ms", "target.emulate=false"],
         "search.latency_metric=mcu_est_latency_ms is not valid with target=nano33_ble_sense"),
    ],
)  # fmt: skip
def test_bad_rung_and_latency_settings_stop_with_one_line_before_any_job(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    base = ["experiment=board_search", "target=nano33_ble_sense", "train.epochs=3"]
    result = run_sweep(tmp_path, *base, *overrides)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert message in output and "Traceback" not in output
    assert sum("is not valid" in line for line in output.splitlines()) == 1
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


# --- real tiny searches -------------------------------------------------------------------


def _by_fidelity(children: list) -> tuple[list, list]:
    rung0 = [c for c in children if c.data.tags.get("search.fidelity") == "rung0"]
    return rung0, [c for c in children if c not in rung0]


def _knobs(run) -> str:
    """The trial's knobs without what rung 0 changes: the schedule, and on a board
    tflite-micro's accuracy (``target.micro_accuracy``)."""
    tokens = run.data.tags["sequence.settings"].split()
    rung0 = ("train.epochs=", "target.micro_accuracy=")
    return " ".join(k for k in tokens if not k.startswith(rung0))


def _dominates(a: tuple, b: tuple) -> bool:
    better_or_equal = a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2]
    return better_or_equal and a != b


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A five-trial rung search, one trial at a time (read by two tests): its outputs root."""
    root = tmp_path_factory.mktemp("rungs")
    seed_store(root)
    sweep_dir = root / "outputs" / "sweep"
    result = run_sweep(root, *RUNGS, "hydra.sweeper.n_trials=5", sweep_dir=sweep_dir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return root


@pytest.mark.slow
def test_a_rung_search_promotes_by_its_rule_and_judges_accuracy_on_full_schedules_only(
    one_at_a_time: Path,
) -> None:
    sweep_dir = one_at_a_time / "outputs" / "sweep"
    _, children = runs_by_role(one_at_a_time)
    assert {c.info.status for c in children} == {"FINISHED"}
    rung0, full = _by_fidelity(children)
    assert len(rung0) == 5  # every trial once at rung 0
    assert {c.data.params["train.epochs"] for c in rung0} == {"1"}
    assert {c.data.params["train.epochs"] for c in full} == {"3"}
    # The accuracy constraint is judged on full schedules only.
    assert all("search.feasible" not in c.data.metrics for c in rung0)
    assert all("search.feasible" in c.data.metrics for c in full)
    assert all(c.data.tags["search.fidelity"] == "full" for c in full)
    # Rung 0 skips tflite-micro's accuracy over the test set; full schedules have it.
    assert all("mcu_accuracy" not in c.data.metrics for c in rung0)
    assert all("mcu_accuracy" in c.data.metrics for c in full)

    # Each promotion follows the rule, recomputed here from the stored rung-0 figures in
    # trial order: fits, within reach of the reference's rung-0 accuracy (0.5 + 30 pp),
    # and not dominated at rung 0 by an earlier promoted trial that was feasible in full.
    rung0.sort(key=lambda c: int(c.data.tags["search.trial"]))
    full_by_knobs = {_knobs(c): c for c in full}
    reference = rung0[0]
    assert full_by_knobs[_knobs(reference)].data.tags["search.role"] == "reference"
    line = reference.data.metrics["tflite_accuracy"] - (0.5 + 30) / 100
    contenders: list[tuple] = []
    promoted = 0
    for run in rung0:
        m = run.data.metrics
        point = (m["tflite_bytes"], m["mcu_latency_median_us"], m["tflite_accuracy"])
        reachable = m["fits_target"] == 1 and m["tflite_accuracy"] >= line
        expected = run is reference or (
            reachable and not any(_dominates(c, point) for c in contenders)
        )
        assert (run.data.tags["search.promoted"] == "true") == expected, run.data.tags
        assert (_knobs(run) in full_by_knobs) == expected  # trained in full only if promoted
        promoted += expected
        if expected and full_by_knobs[_knobs(run)].data.metrics["search.feasible"] == 1:
            contenders.append(point)
    assert 1 < promoted < len(rung0), "this seed promotes some trials and stops others"

    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert results["trials"]["stopped_at_rung0"] == len(rung0) - promoted
    assert (
        results["reference_accuracy"]
        == full_by_knobs[_knobs(reference)].data.metrics["tflite_accuracy"]
    )  # the full-schedule reference sets the constraint, not its rung 0
    full_ids = {c.info.run_id for c in full}
    assert {s["run_id"] for s in results["solutions"]} <= full_ids
    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    assert ranking["runs"] == len(full)  # rung-0 runs are never ranked
    ranked = {rid for ids in ranking["pareto_front_run_ids"].values() for rid in ids}
    assert ranked <= full_ids


@pytest.mark.slow
def test_the_board_search_runs_two_trials_side_by_side_with_the_same_figures(
    tmp_path: Path, one_at_a_time: Path
) -> None:
    """The experiment's own launcher: two joblib workers, two trials per batch. The first
    trials are the sampler's seeded start-up proposals, so they are the same knobs as one
    trial at a time; trained side by side they must measure the same."""
    seed_store(tmp_path)
    result = run_sweep(tmp_path, *SEARCH, "hydra.sweeper.n_trials=2")  # one batch of two
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in output and "is launching 2 jobs" in output
    _, children = runs_by_role(tmp_path)
    rung0, _ = _by_fidelity(children)
    by_trial = {int(c.data.tags["search.trial"]): c for c in rung0}
    assert sorted(by_trial) == [0, 1]
    first, second = by_trial[0].info, by_trial[1].info  # one batch: side by side
    assert first.start_time < second.end_time and second.start_time < first.end_time
    rung0_alone, _ = _by_fidelity(runs_by_role(one_at_a_time)[1])
    alone = {int(c.data.tags["search.trial"]): c for c in rung0_alone}
    for number, run in by_trial.items():
        assert _knobs(run) == _knobs(alone[number])
        assert reproducible(run.data.metrics) == reproducible(alone[number].data.metrics)


def _kill_after(tmp_path: Path, sweep_dir: Path, first: str, then: str, *overrides: str) -> str:
    """Run a sweep; SIGKILL its process group at the first line holding ``then`` printed
    after a line holding ``first``."""
    sweep = Followed(sweep_command(sweep_dir, *overrides), sweep_env(tmp_path))
    sweep.wait_for(then, after=first)
    sweep.signal_group(signal.SIGKILL)
    assert sweep.finish() == -signal.SIGKILL, sweep.output[-3000:]
    return sweep.output


@pytest.mark.slow
def test_a_search_killed_in_the_middle_of_a_rung_resumes_without_repeating_work(
    tmp_path: Path,
) -> None:
    """Killed while the reference trains its full schedule (its rung 0 done): the resumed
    search reuses the rung-0 run, trains the reference in full once more, and finishes.
    The board's flash is too small for the reference: it goes on to its full schedule all
    the same, since its accuracy is the constraint."""
    sweep_dir = tmp_path / "outputs" / "sweep"
    overrides = [*RUNGS, "target.flash_kb=16", "hydra.sweeper.n_trials=2"]
    seed_store(tmp_path)
    _kill_after(tmp_path, sweep_dir, "search: trial 0 rung 0", "(run ", *overrides)
    _, before = runs_by_role(tmp_path)
    assert sorted(c.data.tags.get("search.fidelity", "-") for c in before) == ["-", "rung0"]
    rung0_id = next(c.info.run_id for c in before if c.info.status == "FINISHED")

    result = run_sweep(tmp_path, *overrides, sweep_dir=sweep_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "0 of 2 trials done" in output
    assert "1 interrupted trial(s) queued again, 0 failed for good" in output
    # The reference's rung 0 is not trained again: its job finds the run and skips.
    assert f"already finished in run {rung0_id}, skipping" in output
    _, children = runs_by_role(tmp_path)
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(killed) == 1 and killed[0].data.tags["search.role"] == "interrupted"
    finished = [c for c in children if c.info.status == "FINISHED"]
    rung0, full = _by_fidelity(finished)
    assert len(rung0) == 2  # one rung-0 run per trial: the reference's was not repeated
    assert len({c.data.tags["sweep.config_hash"] for c in rung0}) == 2
    reference = [c for c in full if c.data.tags["search.role"] == "reference"]
    assert len(reference) == 1 and reference[0].data.metrics["fits_target"] == 0
    jobs = [c.data.tags["sweep.job"] for c in children]
    assert len(jobs) == len(set(jobs))  # no job number used twice across the two sessions
    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert results["trials"]["interrupted_and_run_again"] == 1


# --- grids whose jobs run side by side ----------------------------------------------------


def test_parallel_workers_get_jobs_of_different_trained_models_side_by_side() -> None:
    from hydra_plugins.sweep_search.grid_sweeper import interleaved

    grid = itertools.product(["mnist", "fashion_mnist"], ["cnn", "separable_cnn"],
                             ["none", "qat"], ["none", "int8"])  # fmt: skip
    batch = [[f"dataset={d}", f"model={m}", f"pretrain={p}", f"quantize={q}", "seed=0"]
             for d, m, p, q in grid]  # fmt: skip
    order = interleaved(batch, 2)
    assert sorted(order) == sorted(batch)  # the same jobs
    trained = [(o[0], o[1]) for o in order]
    assert all(a != b for a, b in itertools.pairwise(trained))  # neighbours: other models
    datasets = [o[0] for o in order]
    assert datasets == sorted(datasets, key=["dataset=mnist", "dataset=fashion_mnist"].index)
    assert interleaved(batch, 1) == batch


def test_a_grid_runs_side_by_side_within_its_cores_models_and_memory() -> None:
    from hydra_plugins.sweep_search.grid_sweeper import WORKER_BYTES, side_by_side

    plenty = 64 * WORKER_BYTES
    assert side_by_side(None, models=8, cores=2, memory=plenty) == 2  # one per core
    assert side_by_side(None, models=1, cores=2, memory=plenty) == 1  # one model: in process
    assert side_by_side(None, models=8, cores=16, memory=3 * WORKER_BYTES) == 3  # memory
    assert side_by_side(None, models=8, cores=4, memory=None) == 4  # memory unknown
    assert side_by_side(1, models=8, cores=4, memory=plenty) == 1  # asked for one at a time
    assert side_by_side(3, models=2, cores=4, memory=plenty) == 2  # never more than models
    assert side_by_side(None, models=8, cores=4, memory=WORKER_BYTES // 2) == 1
