"""Real multiruns in a subprocess, checked by reading the MLflow store independently."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.config import ROOT, sweep_env
from helpers.preloaded import run_module
from helpers.processes import SAFETY_NET_SECONDS, Followed
from helpers.sweeps import (
    GRID,
    QUICK,
    check_one_finished_sweep,
    check_winners_are_the_stored_best,
    kill_sweep_when,
    recorded_runs,
    run_sweep,
    runs_by_role,
    seed_store,
    store,
    sweep_command,
)

from sweep.metrics import reproducible


@dataclass(frozen=True)
class FinishedGrid:
    """The four-job GRID swept once, one job at a time, as it stood when the sweep ended."""

    root: Path  # SWEEP_OUTPUTS is root / "outputs"
    result: subprocess.CompletedProcess
    parents: list
    children: list


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> FinishedGrid:
    """One sweep read by several tests (each sweep costs ~10 s of start-up and bookkeeping
    before its jobs): tests that add to its store read their own runs by sweep."""
    root = tmp_path_factory.mktemp("grid")
    seed_store(root)
    result = run_sweep(root, *GRID)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FinishedGrid(root, result, *runs_by_role(root))


@pytest.mark.slow
def test_multirun_records_one_child_per_job_and_ranks_from_the_store(grid: FinishedGrid) -> None:
    root, result = grid.root, grid.result
    assert "[4/4] done" in result.stdout and "Ranking" in result.stdout
    assert "oneDNN" not in result.stdout + result.stderr  # TensorFlow's start-up noise is gone

    parents, children = grid.parents, grid.children
    parent = check_one_finished_sweep(parents, children, jobs=4)
    assert {c.data.tags["sequence"] for c in children} == {
        f"mnist · cnn · fit · {p} → {q}" for p in ("none", "pruning") for q in ("none", "int8")
    }
    # The four quantizer jobs trained the model once.
    assert sorted(c.data.metrics["train_cache_hit"] for c in children) == [0, 1, 1, 1]

    ranking = json.loads((root / "outputs" / "sweep" / "ranking.json").read_text())
    check_winners_are_the_stored_best(ranking, children)
    client, _ = store(root)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"ranking.md", "ranking.json", "tradeoffs.png", "reproduction.md"} <= artifacts
    png = (root / "outputs" / "sweep" / "tradeoffs.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

    # Re-ranking from the store alone gives the same winners.
    rerank = run_module(
        "sweep.cli.sweep_rank",
        ["--sweep-dir", str(root / "outputs" / "sweep"), "--out", str(root / "again")],
        env=sweep_env(root),
        cwd=ROOT,
        timeout=SAFETY_NET_SECONDS,
    )
    assert rerank.returncode == 0, rerank.stderr
    again = json.loads((root / "again" / "ranking.json").read_text())
    assert again["winners"] == ranking["winners"]

    # The answer is on the parent run (tags, and the ranking as its description), the
    # Pareto runs are tagged, and the experiment opens on its runs in the MLflow UI.
    tags = client.get_run(parent.info.run_id).data.tags
    for objective, entry in ranking["winners"]["mnist"].items():
        assert tags[f"winner.mnist.{objective}"] == entry["sequence"]
    assert tags["mlflow.note.content"].startswith("## Ranking")
    experiment_id = children[0].info.experiment_id
    on_front = client.search_runs([experiment_id], "tags.pareto_front = 'true'")
    tagged = {c.info.run_id for c in on_front}
    assert tagged == set(ranking["pareto_front_run_ids"]["mnist"]) and tagged
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    store_uri = f"sqlite:///{root / 'outputs' / 'mlflow.db'}"
    assert (
        f"browse the sweep (parent run {parent.info.run_id}): mlflow ui --backend-store-uri "
        f"{store_uri} --host 127.0.0.1, then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}?workflowType=machine_learning"
    ) in result.stdout + result.stderr

    # Budget questions over the whole experiment from the command line.
    smallest = min(c.data.metrics["tflite_bytes"] for c in children)
    budget = run_module(
        "sweep.cli.sweep_rank",
        [
            "--all",
            "--out",
            str(root / "all"),
            "--max-size-kb",
            str(smallest / 1000 + 0.01),
            "--max-accuracy-drop",
            "none",
        ],
        env=sweep_env(root),
        cwd=ROOT,
        timeout=SAFETY_NET_SECONDS,
    )
    assert budget.returncode == 0, budget.stderr
    within = json.loads((root / "all" / "ranking.json").read_text())["winners"]["mnist"]
    assert within["within_budget"]["metrics"]["tflite_bytes"]["mean"] == smallest

    # A quantizer added to the finished grid, in a new sweep: only the new sequence is
    # converted and measured; the others come from the results cache, identical.
    grown_dir = root / "outputs" / "grown"
    grown = run_sweep(root, "pretrain=none", "quantize=none,int8,float16", sweep_dir=grown_dir)
    assert grown.returncode == 0, grown.stdout[-3000:] + grown.stderr[-3000:]
    _, everything = runs_by_role(root)
    added = {c.data.tags["sequence.quantize"]: c for c in everything
             if c.data.tags["sweep.id"].endswith("grown")}  # fmt: skip
    assert {q: c.data.metrics["results_cache_hit"] for q, c in added.items()} == {
        "none": 1,
        "int8": 1,
        "float16": 0,
    }
    assert all(c.data.metrics["train_cache_hit"] == 1 for c in added.values())
    assert "phase_convert_seconds" in added["float16"].data.metrics
    before = {c.data.tags["sequence.quantize"]: c for c in children
              if c.data.tags["sequence.pretrain"] == "none"}  # fmt: skip
    for quantizer in ("none", "int8"):
        assert "phase_convert_seconds" not in added[quantizer].data.metrics
        assert reproducible(added[quantizer].data.metrics) == reproducible(
            before[quantizer].data.metrics
        )


@pytest.mark.slow
def test_failing_job_is_recorded_and_the_sweep_still_ranks(tmp_path: Path) -> None:
    user_code = ROOT / "tests" / "user_code"
    seed_store(tmp_path)
    result = run_sweep(
        tmp_path,
        f"hydra.searchpath=[file://{user_code / 'conf'}]",
        "model=backbone_mlp",
        "pretrain=none,qat",
        extra_env={"PYTHONPATH": str(user_code)},
    )
    assert result.returncode == 1
    parents, children = runs_by_role(tmp_path)
    status = {c.data.tags["sequence.pretrain"]: c.info.status for c in children}
    assert status == {"none": "FINISHED", "qat": "FAILED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "to_annotate" in failed.data.tags["error"]  # tfmot: a model inside the model
    assert parents[0].info.status == "FAILED"
    report = (tmp_path / "outputs" / "sweep" / "ranking.md").read_text()
    assert "Failed sequences" in report and "to_annotate" in report
    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    assert ranking["winners"]["mnist"]["most_accurate"]["components"]["pretrain"] == "none"


@pytest.mark.slow
def test_killed_sweep_resumes_without_duplicates(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "outputs" / "sweep"
    seed_store(tmp_path)
    kill_sweep_when(tmp_path, sweep_dir, "[3/4] mnist", *GRID)  # job 3 is left RUNNING
    _, children = runs_by_role(tmp_path)
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "RUNNING"]

    result = run_sweep(tmp_path, *GRID, sweep_dir=sweep_dir)
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.count("skipping") == 2
    parents, children = runs_by_role(tmp_path)
    assert len(parents) == 1
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FINISHED"] * 4 + ["KILLED"]
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len({c.data.tags["sweep.config_hash"] for c in finished}) == 4
    # Nothing was retrained on resume: the trained model came from the cache.
    resumed = [c for c in finished if c.data.tags["sweep.job"] in ("2", "3")]
    assert all(c.data.metrics["train_cache_hit"] == 1 for c in resumed)
    ranking = json.loads((sweep_dir / "ranking.json").read_text())
    assert ranking["failed"] == [] and ranking["runs"] == 4


@pytest.mark.slow
def test_parallel_joblib_sweep_loses_nothing_and_changes_no_figure(
    tmp_path: Path, grid: FinishedGrid
) -> None:
    """Two jobs at a time (the machine's cores, each job with TensorFlow's default threads),
    into outputs of their own (no shared cache): the grid's two pruning jobs, which need the
    same trained and the same pruned model at once, give the figures of one job at a time."""
    seed_store(tmp_path)
    pruning = ["pretrain=pruning", "quantize=none,int8"]
    result = run_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *pruning)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "database is locked" not in output
    _, children = runs_by_role(tmp_path)
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert all("latency_median_us" in c.data.metrics for c in children)
    # One training and one pruning fine-tune for both: a lock, not a race.
    assert sorted(c.data.metrics["train_cache_hit"] for c in children) == [0, 1]
    assert sorted(c.data.metrics["pretrain_cache_hit"] for c in children) == [0, 1]

    one_at_a_time = {c.data.tags["sweep.config_hash"]: c for c in grid.children}
    for run in children:
        alone = one_at_a_time[run.data.tags["sweep.config_hash"]]
        assert reproducible(alone.data.metrics) == reproducible(run.data.metrics), run.data.tags


@pytest.mark.slow
def test_a_grid_of_two_trained_models_runs_them_side_by_side_with_the_same_figures(
    tmp_path: Path, grid: FinishedGrid
) -> None:
    """No launcher named, two trained models (1 and 10 epochs), two quantizers each, two
    workers (the default is one per core: ``side_by_side``; named here so the test does not
    depend on the machine): the grid runs on joblib workers, each given all the jobs of one
    model in one batch, so no job waits on the stage cache's lock for the model the other
    worker trains (dealt one job at a time, the worker done with the cheap model would take
    the other model's second job and wait). The 10-epoch model's figures are those of one
    job at a time."""
    seed_store(tmp_path)
    result = run_sweep(
        tmp_path, "train.epochs=1,10", "quantize=none,int8", "hydra.sweeper.workers=2"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "grid: 2 trained models, on 2 workers side by side" in output
    assert "batch_size=2" in output and "pre_dispatch=all" in output
    _, children = runs_by_role(tmp_path)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    by_model: dict[str, list] = {}
    for child in children:
        by_model.setdefault(child.data.params["train.epochs"], []).append(child)
    for runs in by_model.values():
        first, second = sorted(runs, key=lambda r: r.info.start_time)
        assert first.info.end_time <= second.info.start_time  # one worker, one after the other
        hits = [run.data.metrics["train_cache_hit"] for run in (first, second)]
        assert hits == [0, 1]  # trained once, by the model's first job
    one_at_a_time = {c.data.tags["sweep.config_hash"]: c for c in grid.children}
    twins = [c for c in children if c.data.tags["sweep.config_hash"] in one_at_a_time]
    assert len(twins) == 2  # 10 epochs, no pre-training, none and int8
    for run in twins:
        alone = one_at_a_time[run.data.tags["sweep.config_hash"]]
        assert reproducible(run.data.metrics) == reproducible(alone.data.metrics)


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (["train.epochs=0"], 2, "train.epochs=0 is not valid: expected an integer >= 1"),
        (["pretrain=pruning", "pretrain.final_sparsity=1.5"], 2, "pretrain.final_sparsity=1.5"),
        (["quantize=int4"], 1, "Could not find 'quantize/int4'"),
    ],
)
def test_bad_settings_stop_with_one_message_and_no_run(
    tmp_path: Path, overrides: list[str], code: int, message: str
) -> None:
    """A single run, and a sweep (whose quantizer grid an unknown quantizer would replace:
    the single run covers it): no MLflow run is opened, not even a sweep's parent."""
    sweeps = [[]] if "quantize=int4" in overrides else [[], ["--multirun", "quantize=none,int8"]]
    for multirun in sweeps:
        result = run_module(
            "sweep", [*multirun, *overrides], sweep_env(tmp_path), ROOT, SAFETY_NET_SECONDS
        )
        output = result.stdout + result.stderr
        assert result.returncode == code, output
        assert message in output
        assert "Traceback" not in output
        assert recorded_runs(tmp_path) == []


@pytest.mark.parametrize(
    ("overrides", "bad"),
    [
        (["quantize=none,int4"], "quantize=int4"),
        (["experiment=paper", "hydra.sweeper.params.pretrain='none,prune'"], "pretrain=prune"),
    ],
    ids=["command line", "experiment grid"],
)
def test_a_sweep_naming_a_missing_option_records_nothing(
    tmp_path: Path, overrides: list[str], bad: str
) -> None:
    """Hydra would find the typo only after the parent run had opened, and leave it RUNNING."""
    result = run_module(
        "sweep",
        ["--multirun", *overrides],
        env=sweep_env(tmp_path),
        cwd=ROOT,
        timeout=SAFETY_NET_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"{bad} is not an option of" in output and "expected one of" in output
    assert "Traceback" not in output
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_the_grid_sweeper_composes_each_job_once() -> None:
    """The configs the sweeper composed to validate a batch are the ones the launcher runs."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    from hydra_plugins.sweep_search.grid_sweeper import ComposedOnce

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(ROOT / "conf")))
    master = loader.load_configuration("config", overrides=[], run_mode=RunMode.MULTIRUN)
    composed: list[list[str]] = []

    class Counting:  # the real loader, counting its compositions
        def load_sweep_config(self, master_config, sweep_overrides):
            composed.append(list(sweep_overrides))
            return loader.load_sweep_config(master_config, sweep_overrides)

    once = ComposedOnce(Counting())
    batch = [["quantize=int8"], ["quantize=float16"], ["quantize=int8"]]  # a duplicate too
    for overrides in batch:
        once.compose_and_keep(master, overrides)
    launched = [once.load_sweep_config(master, overrides) for overrides in batch]
    assert composed == batch  # composed when validated, not again when launched
    assert [c.hydra.runtime.choices.quantize for c in launched] == ["int8", "float16", "int8"]
    assert launched[0] is not launched[2]
    once.load_sweep_config(master, ["quantize=int8"])  # nothing kept: composed anew
    assert len(composed) == 4
    assert master.hydra.sweeper._target_.endswith("GridSweeper")  # the default sweeper


@pytest.mark.parametrize(
    "command",
    [
        ["--multirun", "hydra.sweep.dir={outside}", "quantize=none,int8"],
        ["hydra.run.dir={outside}"],
    ],
    ids=["multirun", "single"],
)
def test_output_folders_outside_outputs_are_refused(tmp_path: Path, command: list[str]) -> None:
    outside = tmp_path / "elsewhere"
    args = [part.format(outside=outside) for part in command]
    result = run_module(
        "sweep", [*args], env=sweep_env(tmp_path), cwd=ROOT, timeout=SAFETY_NET_SECONDS
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "allow_outside_outputs=true" in output and "Traceback" not in output
    assert recorded_runs(tmp_path) == []  # no run at all, not even a sweep's parent
    # Nothing of ours outside; a single run's folder holds what Hydra writes before any
    # check can run (README: its config copy and the job's log).
    hydra_own = {".hydra", "__main__.log"} if "--multirun" not in command else set()
    if outside.exists():
        assert {p.name for p in outside.iterdir()} <= hydra_own


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    [
        pytest.param(["train.epochs=10000"], id="in process"),
        pytest.param(["train.epochs=1,10000", "hydra.sweeper.workers=2"], id="side by side"),
    ],
)
def test_ctrl_c_ends_a_sweep_in_one_line_with_nothing_left_running(
    tmp_path: Path, where: list[str]
) -> None:
    """Ctrl-C in a terminal (SIGINT to the foreground process group: the sweep and its
    workers) while a job trains: exit status 130 and one line, no traceback; the parent run
    and every job that had not finished are KILLED at once, the finished ones kept."""
    sweep_dir = tmp_path / "outputs" / "sweep"
    command = sweep_command(sweep_dir, "quantize=none,int8", *where)
    sweep = Followed(command, sweep_env(tmp_path), as_from_a_terminal=True)
    sweep.wait_for("train epoch 2/10000")
    sweep.signal_group(signal.SIGINT)
    assert sweep.finish() == 130, sweep.output[-3000:]
    output = sweep.output
    assert "Traceback" not in output, output[-3000:]
    parents, children = runs_by_role(tmp_path)
    [parent] = parents
    line = f"interrupted: parent run {parent.info.run_id}"
    assert line in output and "the same command resumes it" in output, output[-3000:]
    assert parent.info.status == "KILLED"
    assert "KeyboardInterrupt" in parent.data.tags["error"]
    statuses = sorted(c.info.status for c in children)
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert all(c.data.params["train.epochs"] == "1" for c in finished)  # nothing else ended


@pytest.mark.slow
def test_replicate_seeds_are_grouped_into_one_sequence(tmp_path: Path) -> None:
    seed_store(tmp_path)
    # Two trained models (a seed each), run in this process: the grouping is the question here,
    # not the side-by-side workers (tested above), which would cost two TensorFlow start-ups.
    result = run_sweep(tmp_path, "seed=0,1", "quantize=none,int8", "hydra.sweeper.workers=1")
    assert result.returncode == 0, result.stdout[-3000:]
    _, children = runs_by_role(tmp_path)
    assert len(children) == 4
    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    assert ranking["runs"] == 4 and ranking["sequences"] == 2
    winner = ranking["winners"]["mnist"]["most_accurate"]
    assert winner["runs"] == 2 and sorted(winner["seeds"]) == [0, 1]
    stored = [
        c.data.metrics["tflite_accuracy"] for c in children if c.info.run_id in winner["run_ids"]
    ]
    accuracy = winner["metrics"]["tflite_accuracy"]
    assert accuracy["mean"] == pytest.approx(sum(stored) / 2)
    assert accuracy["n"] == 2 and accuracy["low"] <= accuracy["mean"] <= accuracy["high"]


@pytest.mark.slow
def test_one_job_with_a_bad_setting_is_reported_and_the_others_run(tmp_path: Path) -> None:
    seed_store(tmp_path)
    result = run_sweep(tmp_path, "pretrain=pruning", "pretrain.fine_tune_epochs=1,0")
    assert result.returncode == 1, result.stdout[-3000:]
    _, children = runs_by_role(tmp_path)
    assert [c.data.params["pretrain.fine_tune_epochs"] for c in children] == ["1"]
    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    [invalid] = ranking["failed"]
    assert invalid["status"] == "INVALID SETTINGS"
    assert "pretrain.fine_tune_epochs=0 is not valid" in invalid["error"]
    assert "pretrain.fine_tune_epochs=0" in invalid["sequence"]


@pytest.mark.slow
def test_ctrl_c_ends_the_run_as_killed_with_the_reason(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) during training: the run is KILLED at once, not left RUNNING.

    Interrupted when the second epoch's line appears, in a training of 10,000 epochs:
    whatever the machine's load, the signal arrives long before training could end. Started
    from another working directory: the run still goes to the store under the outputs
    folder, never to a path relative to where the command was started.
    """
    quick = [o for o in QUICK if not o.startswith("train.epochs")]
    command = [sys.executable, "-m", "sweep", *quick, "train.epochs=10000"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    job = Followed(command, sweep_env(tmp_path), cwd=elsewhere, as_from_a_terminal=True)
    job.wait_for("train epoch 2/10000")
    job.process.send_signal(signal.SIGINT)
    assert job.finish() == 130, job.output[-3000:]  # the README's exit status for Ctrl-C
    assert "Traceback" not in job.output and "interrupted" in job.output, job.output[-3000:]
    client, experiment = store(tmp_path)
    runs = client.search_runs([experiment])
    assert [r.info.status for r in runs] == ["KILLED"]
    assert "KeyboardInterrupt" in runs[0].data.tags["error"]
    assert list(elsewhere.iterdir()) == []  # nothing written where the command started
