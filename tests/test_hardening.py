"""Hardening: a tampered cache runs no code, sweeps never collide, data errors stop early.

Every test uses the real libraries (TensorFlow, MLflow, Hydra, Ray, SQLite): each
one reproduces a way the tool could be misused or could lose work, and shows it
no longer can.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from helpers.config import compose

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
