"""Hardening: a tampered cache runs no code, sweeps never collide, data errors stop early.

Every test uses the real libraries (TensorFlow, MLflow, Hydra, Ray, SQLite): each
one reproduces a way the tool could be misused or could lose work, and shows it
no longer can.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.config import ROOT, compose, sweep_env

QUICK = [
    "dataset.train_limit=600",
    "dataset.test_limit=200",
    "train.epochs=1",
    "measure.windows=3",
    "measure.window_ms=2",
    "measure.warmup_ms=5",
]


# --- 1. a cache entry never runs code ------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _booby_trapped_model(marker: Path):
    """A model whose Lambda layer writes ``marker`` whenever the model is built or called."""
    from sweep.backend import keras

    payload = eval(  # the code an attacker would store: it only writes a marker file
        f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]"
    )
    return keras.Sequential(
        [keras.layers.InputLayer((4,)), keras.layers.Lambda(payload), keras.layers.Dense(2)]
    )


def _plant(entry: Path, model) -> None:
    """Replace an entry's files by ``model``'s and make every checksum in meta.json match."""
    model.save(entry / "model.h5")
    meta = json.loads((entry / "meta.json").read_text())
    if isinstance(meta["sha256"], str):  # the whole-model format
        meta["sha256"] = _sha256(entry / "model.h5")
    else:
        np.savez(entry / "weights.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        meta["sha256"] = {name: _sha256(entry / name) for name in meta["sha256"]}
    (entry / "meta.json").write_text(json.dumps(meta))


def test_the_hdf5_loader_runs_lambda_code_even_in_safe_mode(tmp_path: Path) -> None:
    """Why the cache never loads a model file: tf_keras ignores safe_mode for HDF5."""
    from sweep.backend import keras

    marker = tmp_path / "marker"
    _booby_trapped_model(marker).save(tmp_path / "model.h5")
    marker.unlink()  # building the model ran the payload once: start from no marker
    keras.models.load_model(tmp_path / "model.h5", compile=False, safe_mode=True)
    assert marker.read_text() == "ran"


def test_a_planted_cache_entry_runs_no_code_and_is_rebuilt(isolated: Path) -> None:
    from sweep.job import run

    first = run(compose([*QUICK, "pretrain=qat"]), out_dir=isolated / "first")
    entries = [m.parent for m in (isolated / "outputs" / "cache").rglob("meta.json")]
    assert len(entries) == 2  # the trained and the quantization-aware model
    marker = isolated / "marker"
    for entry in entries:
        _plant(entry, _booby_trapped_model(marker))
    marker.unlink(missing_ok=True)

    try:
        second = run(compose([*QUICK, "pretrain=qat"]), out_dir=isolated / "second")
    finally:
        assert not marker.exists(), "loading the planted cache entry ran its code"
    assert second.metrics["train_cache_hit"] == 0  # the foreign entries were rebuilt
    assert second.metrics["pretrain_cache_hit"] == 0
    assert second.metrics["keras_accuracy"] == first.metrics["keras_accuracy"]
    assert second.metrics["keras_bytes"] == first.metrics["keras_bytes"]
    third = run(compose([*QUICK, "pretrain=qat"]), out_dir=isolated / "third")
    assert third.metrics["train_cache_hit"] == third.metrics["pretrain_cache_hit"] == 1
    assert third.metrics["tflite_accuracy"] == first.metrics["tflite_accuracy"]
    assert third.metrics["keras_bytes"] == first.metrics["keras_bytes"]
    assert not marker.exists()


# --- 4. every local store is checked; an unreachable one fails in seconds -------------


@pytest.mark.parametrize(
    ("uri", "store"),
    [
        ("sqlite+pysqlite:////elsewhere/x.db", "/elsewhere/x.db"),
        ("SQLite:////elsewhere/x.db?timeout=30", "/elsewhere/x.db"),
        ("file:/elsewhere/store", "/elsewhere/store"),
        ("file:///elsewhere/store", "/elsewhere/store"),
        ("file://localhost/elsewhere/store", "/elsewhere/store"),
        ("http://127.0.0.1:5000", None),
        ("postgresql://db.example/mlflow", None),
    ],
)
def test_local_store_uris_of_every_form_name_the_path_they_write(uri: str, store) -> None:
    from sweep.paths import local_store_path, resolve_tracking_uri

    resolved = resolve_tracking_uri(uri)
    assert local_store_path(resolved) == (Path(store) if store else None)
    assert local_store_path(uri) == local_store_path(resolved)


@pytest.mark.parametrize(
    "form",
    ["sqlite+pysqlite:///{}/x.db", "SQLite:///{}/x.db", "file:{}/store", "file://{}/store"],
)
def test_every_local_store_uri_must_lie_under_outputs(isolated: Path, form: str) -> None:
    from sweep.job import run
    from sweep.settings import ConfigError

    elsewhere = isolated / "elsewhere"
    elsewhere.mkdir()
    uri = form.format(elsewhere)
    with pytest.raises(ConfigError, match=r"tracking\.uri=.*outside the outputs folder"):
        run(compose([*QUICK, f"tracking.uri='{uri}'"]))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("tracking.uri='sqlite+pysqlite:///{tmp}/missing/x.db'", "does not exist"),
        ("tracking.uri=http://127.0.0.1:{port}", "no tracking server answers"),
    ],
)
def test_an_unreachable_store_stops_in_seconds_with_one_line(
    tmp_path: Path, setting: str, expected: str
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "sweep", *QUICK, "allow_outside_outputs=true"),
        setting.format(tmp=tmp_path, port=port),
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=ROOT, env=sweep_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "tracking.uri=" in line]
    assert len(errors) == 1 and expected in errors[0], output[-3000:]
    assert seconds < 30, seconds  # MLflow alone retries for about two minutes
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


# --- 6. SQLite under many writers ------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from sweep.tracking import Tracker

uri, parent_id, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
print("ready", flush=True)
tracker = Tracker(uri, "sweep")
run_id = tracker.start_run(f"writer {n}", {"sweep.role": "child", "writer": str(n)}, parent_id)
tracker.log(run_id, params={f"p{i}": i for i in range(30)}, metrics={f"m{i}": i for i in range(20)})
artifact = folder / f"writer-{n}.txt"
artifact.write_text(str(n))
tracker.log_artifacts(run_id, [artifact])
tracker.finish(run_id)
"""


@pytest.mark.slow
def test_eight_writers_lose_no_run_while_the_store_is_locked(isolated: Path) -> None:
    """A store held longer than MLflow's own 20 s wait (a long write, a backup, `mlflow gc`)."""
    from mlflow.tracking import MlflowClient

    from sweep.paths import default_tracking_uri
    from sweep.tracking import Tracker

    uri = default_tracking_uri()
    tracker = Tracker(None, "sweep")
    parent_id = tracker.start_run("sweep writers", {"sweep.role": "parent"})
    holder = sqlite3.connect(isolated / "outputs" / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # nobody reads or writes until it commits
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, parent_id, str(n), str(isolated)],
            cwd=ROOT,
            env=sweep_env(isolated),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(8)
    ]
    for writer in writers:  # every writer has started (imports take a while on 2 cores)
        assert writer.stdout.readline().strip() == "ready"
    time.sleep(25)  # every writer now waits on the lock longer than MLflow's 20 s
    holder.execute("COMMIT")
    holder.close()
    outputs = [w.communicate(timeout=300)[0] for w in writers]
    assert [w.returncode for w in writers] == [0] * 8, "\n".join(o[-1500:] for o in outputs)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(int(c.data.tags["writer"]) for c in children) == list(range(8))
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(child.data.params) == 30 and len(child.data.metrics) == 20
        n = child.data.tags["writer"]
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == [f"writer-{n}.txt"]
