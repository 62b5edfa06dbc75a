"""Planted entries: caches, locks and study journals are files others can write.

Caches are shared between sweeps (and machines, with Ray), a sweep folder may be
anyone's: each test plants what an attacker would (a link with a matching checksum,
a latency file that sets other metrics, NaN metrics, a named pipe, a lock that links
to a victim, a journal queueing parameters outside the space) and runs the real code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import helpers.sweeps
import numpy as np
import pytest
from helpers.config import DATA, ROOT, compose
from helpers.hostile import fifo
from helpers.processes import SAFETY_NET_SECONDS
from helpers.sweeps import run_sweep, runs_by_role

QUICK = [*helpers.sweeps.QUICK, "quantize=int8"]
SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- the user's own -----END-----\n"


@pytest.fixture(scope="module")
def shared_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One outputs folder for the module: the model is trained once, its results entry
    planted on and rebuilt by each test."""
    return tmp_path_factory.mktemp("planted") / "outputs"


@pytest.fixture
def outputs(shared_outputs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWEEP_OUTPUTS", str(shared_outputs))
    monkeypatch.setenv("SWEEP_DATA_DIR", str(DATA))
    return shared_outputs


def _run(out_dir: Path, *extra: str):
    from sweep.pipeline.job import run

    return run(compose([*QUICK, *extra]), out_dir=out_dir)


def _entry(outputs: Path) -> Path:
    entries = [p for p in (outputs / "cache" / "results").iterdir() if p.name[0] != "."]
    entries = [p for p in entries if p.is_dir() and not p.is_symlink()]
    assert len(entries) == 1, entries
    return entries[0]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rewrite_meta(entry: Path, change) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    change(meta)
    (entry / "meta.json").write_text(json.dumps(meta))  # NaN as Python writes it


# --- the results cache -----------------------------------------------------------------


def test_a_linked_file_in_a_results_entry_is_refused_and_never_copied(
    outputs: Path, tmp_path: Path
) -> None:
    first = _run(tmp_path / "first")
    entry = _entry(outputs)
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    (entry / "leak.txt").symlink_to(secret)  # checksummed as the attacker would
    _rewrite_meta(entry, lambda meta: meta["sha256"].update({"leak.txt": _sha256(SECRET.encode())}))

    second = _run(tmp_path / "second")
    assert second.metrics["results_cache_hit"] == 0  # refused, measured again
    assert not (tmp_path / "second" / "leak.txt").exists()
    assert secret.read_text() == SECRET
    assert second.metrics["tflite_accuracy"] == first.metrics["tflite_accuracy"]
    from mlflow.tracking import MlflowClient

    artifacts = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}").list_artifacts(second.run_id)
    assert "leak.txt" not in {a.path for a in artifacts}


def test_a_planted_latency_file_cannot_set_any_other_metric(outputs: Path, tmp_path: Path) -> None:
    from sweep.stores.result_cache import host_fingerprint

    first = _run(tmp_path / "first")
    entry = _entry(outputs)
    planted = {
        "tflite_accuracy": 0.999,
        "fits_target": 1,
        "latency_median_us": 0.001,
        "latency_p10_us": 0.001,
        "latency_p90_us": 0.001,
        "latency_windows": 3,
        "latency_invokes_per_window": 1,
        "latency_threads": 1,
    }
    (entry / f"latency-{host_fingerprint()}.json").write_text(json.dumps(planted))

    reused = _run(tmp_path / "reused", "measure.reuse_latency=true")
    assert reused.metrics["results_cache_hit"] == 1  # the entry itself is intact
    assert reused.metrics["tflite_accuracy"] == first.metrics["tflite_accuracy"]
    assert "fits_target" not in reused.metrics
    assert reused.metrics["latency_median_us"] != 0.001  # timed again


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["NaN", "Infinity"])
def test_non_finite_metrics_in_a_results_entry_are_refused(
    outputs: Path, tmp_path: Path, value: float
) -> None:
    _run(tmp_path / "first")
    entry = _entry(outputs)
    _rewrite_meta(entry, lambda meta: meta["metrics"].update(tflite_accuracy=value))

    again = _run(tmp_path / "again")
    assert again.metrics["results_cache_hit"] == 0
    assert np.isfinite(again.metrics["tflite_accuracy"])


LOAD = """
import sys
from pathlib import Path
from sweep.stores.result_cache import ResultCache
print(ResultCache(Path(sys.argv[1])).load(sys.argv[2], Path(sys.argv[3])))
"""


def test_a_named_pipe_in_a_results_entry_does_not_block(tmp_path: Path) -> None:
    """meta.json as a FIFO: a reader that opens it waits for a writer forever."""
    from sweep.stores.result_cache import ResultCache

    out = tmp_path / "job"
    out.mkdir()
    (out / "model.tflite").write_bytes(b"model")
    (out / "predictions.npy").write_bytes(b"predictions")
    cache = ResultCache(tmp_path / "results")
    cache.store("key", out, {"tflite_accuracy": 0.9}, {})
    (tmp_path / "results" / "key" / "meta.json").unlink()
    fifo(tmp_path / "results" / "key" / "meta.json")
    try:
        done = subprocess.run(
            [sys.executable, "-c", LOAD, str(tmp_path / "results"), "key", str(tmp_path / "b")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SAFETY_NET_SECONDS,  # a safety net: blocking would hang
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading the entry blocked on its named pipe")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "None"


# --- locks -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_planted_sweep_lock_leaves_its_target_untouched(tmp_path: Path, how: str) -> None:
    from sweep.cli.sweep_callback import LOCK_FILE, hold_sweep_folder
    from sweep.settings import ConfigError

    victim = tmp_path / "victim.bashrc"
    victim.write_text(SECRET)
    sweep_dir = tmp_path / "outputs" / "sweep"
    sweep_dir.mkdir(parents=True)
    if how == "symlink":
        (sweep_dir / LOCK_FILE).symlink_to(victim)
    else:
        os.link(victim, sweep_dir / LOCK_FILE)
    with pytest.raises(ConfigError, match=r"hydra\.sweep\.dir=.*\.sweep\.lock") as refused:
        hold_sweep_folder(sweep_dir).close()
    assert "\n" not in str(refused.value)
    assert victim.read_text() == SECRET


def test_a_planted_stage_cache_lock_leaves_its_target_untouched(tmp_path: Path) -> None:
    from sweep.backend import keras
    from sweep.stores.stage_cache import StageCache

    def architecture():
        return keras.Sequential([keras.layers.InputLayer((4,)), keras.layers.Dense(2)])

    victim = tmp_path / "victim.bashrc"
    victim.write_text(SECRET)
    cache, material = StageCache(tmp_path / "cache"), {"planted": True}
    entry = cache.entry("train", material)
    entry.parent.mkdir(parents=True)
    entry.with_suffix(".lock").symlink_to(victim)

    built = cache.get_or_build("train", material, lambda: (architecture(), {}), architecture)
    assert not built.hit
    assert victim.read_text() == SECRET
    assert not entry.with_suffix(".lock").is_symlink()  # replaced by a lock file of its own
    assert cache.get_or_build("train", material, None, architecture).hit


# --- a tampered study journal ------------------------------------------------------------

SEARCH = [
    "hydra/sweeper=search",
    "model.filters=int(interval(4,6))",
    "model.separable=choice(false)",
    "hydra.sweeper.n_trials=1",
]


def _tamper_journal(sweep_dir: Path) -> None:
    """What an attacker writes into the sweep's study journal, with Optuna itself: a trial
    left RUNNING and queued ones with knobs outside the space (out of range, not among the
    choices, a knob the search does not have whose value would read the environment)."""
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_dir.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    study = optuna.create_study(study_name="search", storage=storage, direction="maximize")
    study.enqueue_trial({"model.filters": 2, "model.separable": False})
    study.ask({"model.filters": IntDistribution(1, 10**9)})  # left RUNNING: filters=2
    small = {"model.filters": 3, "model.separable": False}  # first in the queue
    for params in (
        small,
        {"model.filters": 5, "model.separable": "evil"},
        {"model.filters": 1_000_000_000, "model.separable": False},
        {"model.filters": 5, "model.separable": False, "model.name": "${oc.env:HOME}"},
    ):
        study.enqueue_trial(params)


@pytest.mark.slow
def test_a_tampered_study_journal_runs_nothing_outside_the_space(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "outputs" / "sweep"
    _tamper_journal(sweep_dir)
    result = run_sweep(tmp_path, *SEARCH, sweep_dir=sweep_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    refused = [line for line in output.splitlines() if "refused, not run" in line]
    assert len(refused) == 5, output[-3000:]
    for knob in ("filters=2", "filters=3", "'evil'", "filters=1000000000", "model.name"):
        assert any(knob in line for line in refused), (knob, refused)
    _, children = runs_by_role(tmp_path)
    assert len(children) == 1, output[-3000:]  # the budget went to a trial of the space
    assert int(children[0].data.params["model.filters"]) in {4, 5, 6}
    assert children[0].data.params["model.name"] == "cnn"
