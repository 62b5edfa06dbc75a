"""The constrained search (experiment=board_search, hydra/sweeper=search): model knobs,
the search space, the constraints, and real tiny searches in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.sweeps import kill_sweep_when, run_sweep, runs_by_role, seed_store
from omegaconf import OmegaConf

# A board whose flash the reference CNN (24 KB of .tflite) does not fit: trial 0 is infeasible.
# Resuming and the constraints need tflite-micro's verdict, not the board's emulated build.
# One trial at a time (the experiment runs two side by side), so the kill lands in trial 2.
SMALL_BOARD = [
    "experiment=board_search",
    "target=nano33_ble_sense",
    "target.flash_kb=16",
    "target.emulate=false",
    "hydra/launcher=basic",
    "hydra.sweeper.n_jobs=1",
]


def test_model_defaults_are_the_reference_cnn_and_blocks_shrink_the_dense_layer() -> None:
    from sweep.groups.model import ConvNet

    reference = ConvNet().build((28, 28), 10)
    assert reference.count_params() == 20_410
    assert [type(layer).__name__ for layer in reference.layers] == [
        "Reshape", "Conv2D", "MaxPooling2D", "Flatten", "Dense",
    ]  # fmt: skip
    two = ConvNet(filters=8, blocks=2, separable=True, dense_units=16).build((28, 28), 10)
    assert [type(layer).__name__ for layer in two.layers] == [
        "Reshape", "SeparableConv2D", "MaxPooling2D", "SeparableConv2D", "MaxPooling2D",
        "Flatten", "Dense", "Dense",
    ]  # fmt: skip
    hidden = two.layers[-2]
    assert hidden.units == 16 and hidden.activation.__name__ == "relu"
    # 28×28×1 → 3×3 valid: 26×26×8 → pool 13×13 → 3×3 same: 13×13×8 → pool 6×6×8 = 288
    first = 3 * 3 * 1 + 1 * 8 + 8  # depthwise, pointwise, bias
    second = 3 * 3 * 8 + 8 * 8 + 8
    assert two.count_params() == first + second + (288 * 16 + 16) + (16 * 10 + 10) == 4_963


def test_a_model_that_pools_its_input_away_is_refused_with_the_knobs_to_change() -> None:
    from sweep.groups.model import ConvNet
    from sweep.settings import ConfigError

    with pytest.raises(ConfigError, match="use fewer blocks or a smaller pool_size"):
        ConvNet(kernel_size=5, pool_size=4, blocks=3).build((28, 28), 10)


def test_the_space_reads_hydra_sweep_syntax_and_the_reference_comes_from_the_config() -> None:
    from helpers.config import compose
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from sweep.search.space import parse_space, reference_params

    cfg = compose(["experiment=board_search", "target=nano33_ble_sense"], with_hydra=True)
    space = parse_space(cfg.hydra.sweeper.params, ["quantize.calibration_samples=300", "seed=1"])
    assert space.distributions["model.filters"] == IntDistribution(4, 16)
    assert space.distributions["model.separable"] == CategoricalDistribution([False, True])
    assert space.distributions["pretrain"] == CategoricalDistribution(["none", "qat"])
    assert "quantize.calibration_samples" not in space.distributions  # fixed from the command line
    assert space.fixed == {"quantize.calibration_samples": "300", "seed": "1"}
    assert parse_space({"x": "interval(0.5, 1.0)"}, []).distributions["x"] == FloatDistribution(
        0.5, 1.0
    )
    reference = reference_params(space, cfg)
    assert reference == {
        "model.filters": 12, "model.kernel_size": 3, "model.pool_size": 2,
        "model.separable": False, "model.blocks": 1, "pretrain": "none",
    }  # fmt: skip


def test_constraints_name_every_violation() -> None:
    from sweep.search.constraints import judge
    from sweep.search.search_settings import SearchSettings

    settings = SearchSettings(max_accuracy_drop=0.5, require_target=True, reference=True)
    ok = {"mcu_runs": 1.0, "fits_target": 1.0, "tflite_accuracy": 0.980}
    assert judge(ok, settings, 0.982, "nano33_ble_sense").feasible
    bad = {"mcu_runs": 1.0, "fits_target": 0.0, "fits_flash": 0.0, "fits_ram": 1.0,
           "tflite_accuracy": 0.970}  # fmt: skip
    verdict = judge(bad, settings, 0.982, "nano33_ble_sense")
    assert not verdict.feasible
    assert verdict.constraints["fits_target"] == 1.0
    assert verdict.constraints["accuracy_drop"] == pytest.approx(1.2 - 0.5)
    assert "does not fit nano33_ble_sense's flash" in verdict.reason
    assert "1.20 pp below the reference 98.20%" in verdict.reason


def test_knobs_that_end_the_process_twice_fail_for_good_instead_of_looping() -> None:
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState

    from sweep.search.sweeper import Search, _counted

    class NoRuns:  # the MLflow side: no run to tag
        def search(self, _filter: str) -> list:
            return []

    search = Search()
    search.tracker, search.sweep_id = NoRuns(), "sweep"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    space = {"model.filters": IntDistribution(4, 16)}
    first = study.ask(space)  # left RUNNING by a killed process
    search._recover(study, None)
    again = study.ask(space)  # the queued copy: same knobs, and the process dies again
    assert again.params == first.params
    search._recover(study, None)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert study.trials[0].user_attrs["interrupted"] is True
    assert "ended twice" in study.trials[1].user_attrs["failed"]
    assert len(_counted(study)) == 1  # the crash used up budget; the first interruption did not
    assert study.get_trials(states=(TrialState.WAITING,)) == []  # not queued a third time


@pytest.mark.slow
def test_a_killed_search_resumes_and_records_one_child_per_trial(tmp_path: Path) -> None:
    """One search of 4 trials, killed during trial 2 and run again: the finished trials are
    not repeated, every trial is one child run marked with its verdict."""
    sweep_dir = tmp_path / "outputs" / "sweep"
    overrides = [*SMALL_BOARD, "hydra.sweeper.n_trials=4"]
    # Killed while trial 2 is running: two trials told, one not.
    seed_store(tmp_path)
    kill_sweep_when(tmp_path, sweep_dir, "[3/4] mnist", *overrides)
    _, before = runs_by_role(tmp_path)
    done_before = {c.info.run_id for c in before if c.info.status == "FINISHED"}
    assert len(done_before) == 2

    result = run_sweep(tmp_path, *overrides, sweep_dir=sweep_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert (
        "2 of 4 trials done" in output
        and "1 interrupted trial(s) queued again, 0 failed for good" in output
    )
    parents, children = runs_by_role(tmp_path)
    assert len(parents) == 1
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4 + ["KILLED"]
    assert done_before <= {c.info.run_id for c in finished}  # trials 0 and 1 were not re-run
    assert len({c.data.tags["sweep.config_hash"] for c in finished}) == 4
    # The interrupted trial ran again under a new trial number, with the same knobs.
    killed = next(c for c in children if c.info.status == "KILLED")
    assert killed.data.tags["search.role"] == "interrupted"
    by_trial = {int(c.data.tags["search.trial"]): c for c in finished}
    assert sorted(by_trial) == [0, 1, 3, 4]
    assert killed.data.tags["sequence.settings"] in {
        c.data.tags["sequence.settings"] for c in (by_trial[3], by_trial[4])
    }

    reference = by_trial[0]
    assert reference.data.tags["search.role"] == "reference"
    assert reference.data.params["model.filters"] == "12"  # the reference CNN itself
    # The reference does not fit 16 KB of flash: recorded as a violation, with the reason.
    assert reference.data.metrics["search.feasible"] == 0
    assert "does not fit nano33_ble_sense's flash" in reference.data.tags["search.reason"]
    accuracy = reference.data.metrics["tflite_accuracy"]
    for child in finished:
        fits = child.data.metrics["fits_target"] == 1
        drop = 100 * (accuracy - child.data.metrics["tflite_accuracy"])
        expected = float(fits and drop <= 0.5)
        assert child.data.metrics["search.feasible"] == expected, child.data.tags["search.reason"]

    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert results["reference_accuracy"] == accuracy
    assert results["trials"]["interrupted_and_run_again"] == 1
    feasible_runs = {c.info.run_id for c in finished if c.data.metrics["search.feasible"] == 1}
    assert {s["run_id"] for s in results["solutions"]} <= feasible_runs
    assert json.loads((sweep_dir / "ranking.json").read_text())["failed"] == []


BOARD = ["experiment=board_search", "target=nano33_ble_sense"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([*BOARD, "search.max_accuracy_drop=-1"], "search.max_accuracy_drop=-1 is not valid"),
        (["experiment=board_search"], "search.require_target=true is not valid with target=host"),
        ([*BOARD, "hydra.sweeper.sampler=grid"], "hydra.sweeper.sampler='grid' is not valid"),
    ],
)
def test_bad_search_settings_stop_with_one_line_before_any_job(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    result = run_sweep(tmp_path, *overrides)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert message in output and "Traceback" not in output
    assert sum("is not valid" in line for line in output.splitlines()) == 1
    # Checked before the sweep's parent run is opened: the store was not even created.
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


# Trials that stop at validation (final_sparsity below pruning's initial 0.5): no training,
# so a search's bookkeeping is tested in seconds a trial.
FAILING_SEARCH = [
    "experiment=optuna_search",
    "hydra.sweeper.sampler=random",
    "pretrain.final_sparsity=interval(0.1, 0.4)",
]


@pytest.mark.slow
def test_a_resumed_search_is_reseeded_kept_in_its_storage_and_stops_at_its_time_budget(
    tmp_path: Path,
) -> None:
    """A search kept in SQLite (``hydra.sweeper.storage``), run for one trial, then resumed:
    the sampler is re-seeded (it does not propose the first trial's knobs again, which it
    would have to skip as a repeat); resumed again with a time budget already used up by
    one batch, it starts no further trial."""
    import optuna

    sweep_dir = tmp_path / "outputs" / "sweep"
    storage = f"sqlite:///{tmp_path / 'outputs' / 'study.db'}"
    search = [*FAILING_SEARCH, f"hydra.sweeper.storage='{storage}'"]

    def study() -> optuna.Study:
        return optuna.load_study(study_name="optuna_search", storage=storage)

    first = run_sweep(tmp_path, *search, "hydra.sweeper.n_trials=1", sweep_dir=sweep_dir)
    assert first.returncode == 1, (first.stdout + first.stderr)[-3000:]  # the trial failed
    assert len(study().trials) == 1
    assert not (sweep_dir / "study.journal").exists()  # the study is where storage says

    second = run_sweep(tmp_path, *search, "hydra.sweeper.n_trials=2", sweep_dir=sweep_dir)
    output = second.stdout + second.stderr
    assert "1 of 2 trials done" in output, output[-3000:]
    trials = study().trials
    assert [t.number for t in trials] == [0, 1]  # no proposal repeated trial 0's knobs
    assert not any("duplicate_of" in t.user_attrs for t in trials)
    assert trials[1].params != trials[0].params

    third = run_sweep(
        tmp_path, *search, "hydra.sweeper.n_trials=20", "hydra.sweeper.timeout_minutes=0.0001",
        "hydra.sweeper.max_failures_in_a_row=100", sweep_dir=sweep_dir,
    )  # fmt: skip
    output = third.stdout + third.stderr
    assert "reached the time budget" in output, output[-3000:]
    new = len(study().trials) - 2
    assert new <= 2, new  # at most the one batch (n_jobs=2) begun within 6 ms of the start
