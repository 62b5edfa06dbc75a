"""Hardening: a tampered cache runs no code, sweeps never collide, data errors stop early.

Every test uses the real libraries (TensorFlow, MLflow, Hydra, Ray, SQLite): each
one reproduces a way the tool could be misused or could lose work, and shows it
no longer can.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.config import DATA, ROOT, compose, sweep_env
from helpers.preloaded import run_module
from helpers.processes import SAFETY_NET_SECONDS, Followed
from helpers.sweeps import (
    check_one_finished_sweep,
    run_sweep,
    runs_by_role,
    seed_store,
    sweep_command,
)

QUICK = [
    "dataset.train_limit=600",
    "dataset.test_limit=200",
    "train.epochs=1",
    "measure.windows=3",
    "measure.window_ms=2",
    "measure.warmup_ms=5",
]


# --- 1. a cache entry never runs code ------------------------------------------------, seed_store
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
    from sweep.pipeline.job import run

    first = run(compose([*QUICK, "pretrain=qat"]), out_dir=isolated / "first")
    cache = isolated / "outputs" / "cache"
    entries = [
        m.parent for stage in ("train", "pretrain") for m in cache.glob(f"{stage}/*/meta.json")
    ]
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
    from sweep.stores.paths import local_store_path, resolve_tracking_uri

    resolved = resolve_tracking_uri(uri)
    assert local_store_path(resolved) == (Path(store) if store else None)
    assert local_store_path(uri) == local_store_path(resolved)


@pytest.mark.parametrize(
    "form",
    ["sqlite+pysqlite:///{}/x.db", "SQLite:///{}/x.db", "file:{}/store", "file://{}/store"],
)
def test_every_local_store_uri_must_lie_under_outputs(isolated: Path, form: str) -> None:
    from sweep.pipeline.job import run
    from sweep.settings import ConfigError

    elsewhere = isolated / "elsewhere"
    elsewhere.mkdir()
    uri = form.format(elsewhere)
    with pytest.raises(ConfigError, match=r"tracking\.uri=.*outside the outputs folder"):
        run(compose([*QUICK, f"tracking.uri='{uri}'"]))
    assert list(elsewhere.iterdir()) == []


@contextlib.contextmanager
def _loopback_port(kind: str) -> Iterator[socket.socket | None]:
    """A loopback port this test holds while the command runs, so nobody else takes it:
    ``closed`` is bound and not listening (a connection is refused at once), ``silent``
    listens and never answers (a client waits until it gives up)."""
    if kind == "none":
        yield None
        return
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        if kind == "silent":
            held.listen(64)  # the kernel completes every handshake; nobody ever reads
        yield held


def _connections_made(listening: socket.socket) -> int:
    """How many clients connected to a listening socket nobody accepted on."""
    listening.setblocking(False)
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            listening.accept()[0].close()
            count += 1
    return count


@pytest.mark.parametrize(
    ("port", "setting", "expected"),
    [
        ("none", "tracking.uri='sqlite+pysqlite:///{tmp}/missing/x.db'", "does not exist"),
        ("closed", "tracking.uri=http://127.0.0.1:{port}", "no tracking server answers"),
        ("silent", "tracking.uri=http://127.0.0.1:{port}", "answers within 5 s (timed out)"),
    ],
    ids=["missing folder", "closed port", "silent server"],
)
def test_an_unreachable_store_stops_in_seconds_with_one_line(
    tmp_path: Path, port: str, setting: str, expected: str
) -> None:
    """A server that does not answer is asked once, for 5 s, and the command stops: MLflow
    alone would retry for about two minutes (its retries would connect again and again)."""
    with _loopback_port(port) as held:
        number = held.getsockname()[1] if held else None
        args = [*QUICK, "allow_outside_outputs=true", setting.format(tmp=tmp_path, port=number)]
        result = run_module(
            "sweep", args, env=sweep_env(tmp_path), cwd=ROOT, timeout=SAFETY_NET_SECONDS
        )
        output = result.stdout + result.stderr
        assert result.returncode == 2, output[-3000:]
        assert "Traceback" not in output
        errors = [line for line in output.splitlines() if "tracking.uri=" in line]
        assert len(errors) == 1 and expected in errors[0], output[-3000:]
        if port == "silent":
            assert _connections_made(held) == 1
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


# --- 6. SQLite under many writers ------------------------------------------------------

WRITERS = """
import logging
import os
import sys
import traceback
from pathlib import Path
from sweep.stores.tracking import Tracker  # MLflow imported once, before the writers fork

uri, parent_id, count, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])

def write(n):
    sys.stdout.reconfigure(line_buffering=True)  # a line is one write: writers never mix
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format=f"[writer {n}] %(levelname)s %(name)s: %(message)s")
    tracker = Tracker(uri, "sweep")
    run_id = tracker.start_run(f"writer {n}", {"sweep.role": "child", "writer": str(n)}, parent_id)
    tracker.log(run_id, params={f"p{i}": i for i in range(30)},
                metrics={f"m{i}": i for i in range(20)})
    artifact = folder / f"writer-{n}.txt"
    artifact.write_text(str(n))
    tracker.log_artifacts(run_id, [artifact])
    tracker.finish(run_id)

pids = {}
for n in range(count):
    pid = os.fork()
    if pid == 0:  # a writer: a process of its own, with its own connections to the store
        try:
            write(n)
            code = 0
        except BaseException:
            print("".join(f"[writer {n}] {line}\\n" for line in
                          traceback.format_exc().splitlines()), end="")
            code = 1
        sys.stdout.flush()
        os._exit(code)
    pids[pid] = n
for _ in range(count):
    pid, status = os.wait()
    print(f"[writer {pids[pid]}] exited with {os.waitstatus_to_exitcode(status)}", flush=True)
"""
WRITER_LINE = re.compile(r"\[writer (\d+)\] (.*)", re.DOTALL)


@pytest.mark.slow
def test_eight_writers_lose_no_run_while_the_store_is_locked(isolated: Path) -> None:
    """A store held longer than MLflow's own 20 s wait (a long write, a backup, `mlflow gc`):
    every writer waits, retries, and records its run once the store is free. The eight
    writers are processes forked by one that imported MLflow (~4 CPU s an import)."""
    from mlflow.tracking import MlflowClient

    from sweep.stores.paths import default_tracking_uri
    from sweep.stores.tracking import Tracker

    uri = default_tracking_uri()
    tracker = Tracker(None, "sweep")
    parent_id = tracker.start_run("sweep writers", {"sweep.role": "parent"})
    holder = sqlite3.connect(isolated / "outputs" / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # nobody reads or writes until it commits
    writers = subprocess.Popen(
        [sys.executable, "-c", WRITERS, uri, parent_id, "8", str(isolated)],
        cwd=ROOT,
        env=sweep_env(isolated),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # The lock is released only once every writer has waited out MLflow's own 20 s and
    # said it retries: each writer's first call found the store locked.
    outputs: list[list[str]] = [[] for _ in range(8)]
    unattributed: list[str] = []
    retried = [False] * 8
    codes: list[int | None] = [None] * 8
    waiting = [threading.Event() for _ in range(8)]  # set when it retries, or if it ends

    def follow() -> None:
        for line in writers.stdout:
            said = WRITER_LINE.fullmatch(line)
            if said is None:
                unattributed.append(line)
                continue
            n, text = int(said.group(1)), said.group(2)
            outputs[n].append(text)
            if "MLflow store busy (database is locked): retrying" in text:
                retried[n] = True
                waiting[n].set()
            if text.startswith("exited with "):
                codes[n] = int(text.split()[-1])
                waiting[n].set()
        for event in waiting:
            event.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        for n, event in enumerate(waiting):
            assert event.wait(timeout=SAFETY_NET_SECONDS), "".join(outputs[n][-30:])
            assert retried[n], "".join(unattributed[-30:] + outputs[n][-30:])
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert writers.wait(timeout=SAFETY_NET_SECONDS) == 0, "".join(unattributed[-30:])
    reader.join()
    assert codes == [0] * 8, "\n".join("".join(o[-30:]) for o in outputs)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(int(c.data.tags["writer"]) for c in children) == list(range(8))
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(child.data.params) == 30 and len(child.data.metrics) == 20
        n = child.data.tags["writer"]
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == [f"writer-{n}.txt"]


# --- 2. two sweeps never share a folder ------------------------------------------------


def test_default_folders_of_commands_started_in_one_second_differ(isolated: Path) -> None:
    first = compose(["experiment=paper"], with_hydra=True).hydra
    second = compose(["experiment=paper"], with_hydra=True).hydra
    assert first.sweep.dir != second.sweep.dir
    assert first.run.dir != second.run.dir
    assert re.fullmatch(r".*/multirun/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", first.sweep.dir)


@pytest.mark.slow
def test_a_sweep_folder_in_use_is_refused_and_the_running_sweep_is_untouched(
    tmp_path: Path,
) -> None:
    """The first sweep is paused (SIGSTOP) once its parent run is open, holding its folder,
    so the second one certainly starts while the first runs; resumed (SIGCONT), the first
    finishes untouched."""
    sweep_dir = tmp_path / "outputs" / "sweep"
    grid = ["quantize=none,int8"]
    seed_store(tmp_path)
    first = Followed(sweep_command(sweep_dir, *grid), sweep_env(tmp_path))
    try:
        first.wait_for("sweep of 2 jobs")  # its parent run is open: the folder is held
        first.signal_group(signal.SIGSTOP)
        try:
            second = run_sweep(tmp_path, *grid, sweep_dir=sweep_dir)
        finally:
            first.signal_group(signal.SIGCONT)
        output = second.stdout + second.stderr
        assert second.returncode == 2, output[-3000:]
        assert "Traceback" not in output
        assert f"hydra.sweep.dir={sweep_dir} is in use by another sweep" in output
        assert first.finish() == 0, first.output[-3000:]
    finally:
        if first.process.poll() is None:
            first.signal_group(signal.SIGKILL)
    parents, children = runs_by_role(tmp_path)
    check_one_finished_sweep(parents, children, jobs=2)  # nothing KILLED, nothing doubled
    assert "KILLED" not in first.output

    again = run_sweep(tmp_path, *grid, sweep_dir=sweep_dir)  # resuming still works
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert (again.stdout + again.stderr).count("already finished") == 2


# --- 3. a local Ray stays on loopback by itself: test_scale_out.py, whose Ray sweep
# (started without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) checks what every process listens on.


# --- 5. data errors stop before any run ----------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, str]:
    """A missing path, a truncated IDX file in a copy of the MNIST subset, a malformed .npz."""
    truncated = tmp_path / "truncated"
    shutil.copytree(DATA / "mnist", truncated)
    images = next(truncated.glob("train-images*"))
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    malformed = tmp_path / "malformed.npz"
    malformed.write_bytes(b"PK\x03\x04 not really a zip archive")
    return {
        "missing": str(tmp_path / "no-such-folder"),
        "truncated": str(truncated),
        "malformed": str(malformed),
    }


@pytest.mark.parametrize("kind", ["missing", "truncated", "malformed"])
def test_a_single_run_with_bad_data_opens_no_run(isolated: Path, kind: str) -> None:
    from sweep.formats.idx import DataError
    from sweep.pipeline.job import run

    path = _bad_inputs(isolated)[kind]
    with pytest.raises(DataError, match=re.escape(Path(path).name)):
        run(compose([*QUICK, f"dataset.path={path}"]))
    assert not (isolated / "outputs" / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "truncated", "malformed", "one option of two"])
def test_a_sweep_with_bad_data_stops_before_the_first_job(tmp_path: Path, kind: str) -> None:
    bad = _bad_inputs(tmp_path)
    if kind == "one option of two":  # only the jobs of one dataset option would read it
        path, data = bad["truncated"], f"dataset.path={DATA / 'mnist'},{bad['truncated']}"
    else:
        path, data = bad[kind], f"dataset.path={bad[kind]}"
    result = run_sweep(tmp_path, data, "pretrain=none,pruning", "quantize=none,int8")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if path in line]
    assert len(errors) == 1, output[-3000:]  # one line, naming the file
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # no run, not even a parent
    assert not (tmp_path / "outputs" / "sweep").exists()
