"""Cache of trained and pre-trained models, so quantizers never retrain.

An entry is keyed by a hash of everything that determines the stage (data
fingerprint, component settings, seed, library versions, the source of the
components' classes). Entries are written
to a temporary folder and renamed into place, carry checksums that are checked
on every read (a damaged entry is rebuilt), and are built under a file lock, so
two parallel jobs needing the same model train it once.

An entry holds weights only, as plain arrays read without pickle; the
architecture always comes from the job's own code (the model builder, then the
QAT wrapper when the stage used it). A Keras HDF5 file carries Python code
(a Lambda layer's marshalled bytecode runs when the file is loaded, and
tf_keras 2.21's HDF5 loader ignores ``safe_mode``), so whoever could write
``outputs/cache`` would otherwise run code in every later sweep. ``model.h5``
is still written beside the weights, for its size (the study's "original
model", with optimizer state) and for people, but never loaded. An entry's files
are read without following links, as regular files only, and its lock file is
never a link's target (:mod:`sweep.stores.untrusted`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweep import strict_json
from sweep.backend import keras, tfmot
from sweep.stores.fingerprints import digest, package_versions
from sweep.stores.memos import sweep_dict
from sweep.stores.untrusted import read_file, remove, replace_lock

log = logging.getLogger(__name__)

_VERSIONED = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "sweep")
FORMAT = 2  # 1: whole HDF5 models (loaded with their code); 2: weights only
MODEL_FILE = "model.h5"  # written for its size and for people; never loaded
WEIGHTS_FILE = "weights.npz"
# Makes the custom-object scope a stage's layers need (e.g. QAT layers).
ScopeFactory = Callable[[], contextlib.AbstractContextManager]
# Makes the untrained architecture of a stage's model, from the job's own code.
Architecture = Callable[[], "keras.Model"]


def library_versions() -> dict[str, str]:
    """Versions that change what a stage produces (also logged as MLflow tags)."""
    return package_versions(_VERSIONED)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quantize_wrapped(model: keras.Model) -> bool:
    """Whether a model is the output of tfmot's ``quantize_model`` (QAT)."""
    if "tensorflow_model_optimization" not in sys.modules:
        return False  # nothing in this process could have wrapped it: no toolkit import
    wrapper = tfmot.quantization.keras.QuantizeWrapper
    return any(isinstance(layer, wrapper) for layer in model.layers)


def rebuild(architecture: Architecture, wrapper: str, scope: ScopeFactory) -> keras.Model:
    """The stage's architecture from code: the builder's model, QAT-wrapped if it was.

    ``wrapper`` only picks one of these code paths; nothing read from disk is run.
    """
    if wrapper not in ("", "quantize"):
        raise ValueError(f"unknown wrapper {wrapper!r}")
    with scope():
        model = architecture()
        if wrapper == "quantize":
            model = tfmot.quantization.keras.quantize_model(model)
    return model


def _set_weights(model: keras.Model, arrays: list[np.ndarray]) -> None:
    """Load arrays into a model whose every weight has the same shape and dtype, or raise."""
    expected = [(tuple(w.shape), np.dtype(w.dtype.as_numpy_dtype)) for w in model.weights]
    found = [(a.shape, a.dtype) for a in arrays]
    if found != expected:
        raise ValueError(f"weights do not fit the architecture ({len(found)} arrays)")
    model.set_weights(arrays)


@dataclass
class Stage:
    """A model produced by one stage, where its file is, and how it was obtained."""

    model: keras.Model
    path: Path  # model.h5, the stage's model with optimizer state (for its size only)
    info: dict[str, Any]  # e.g. {"seconds": 14.2, "history": [...]}, as built
    hit: bool  # True when read from the cache
    fresh: Callable[[], keras.Model]  # a new model holding the same weights


_LOADED: dict[tuple[Path, str], Stage] = sweep_dict()
_LOADED_KEPT = 4
"""(entry, weights checksum) -> the stage as loaded: the quantizers of one pre-trained model
load it once per process (callers only read it; pre-training copies it with ``fresh``)."""


def _remember(entry: Path, weights_sha256: str, stage: Stage) -> None:
    """Keep a stage this process built or loaded, for the next jobs that read it."""
    while len(_LOADED) >= _LOADED_KEPT:  # a sweep goes sequence by sequence
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[(entry, weights_sha256)] = stage


class StageCache:
    """Build-or-load of stage models under ``root``; ``enabled=False`` always rebuilds."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root, self.enabled = root, enabled

    def entry(self, stage: str, material: dict[str, Any]) -> Path:
        key = digest({"material": material, "versions": library_versions(), "format": FORMAT})
        return self.root / stage / key[:24]

    @contextlib.contextmanager
    def _locked(self, entry: Path) -> Iterator[None]:
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock = replace_lock(entry.with_suffix(".lock"))  # a planted link: replaced, not followed
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # releases the lock

    def _read(self, entry: Path, architecture: Architecture, scope: ScopeFactory) -> Stage | None:
        meta_path = entry / "meta.json"
        if not meta_path.exists():
            return None
        try:
            if entry.is_symlink():
                raise ValueError("the entry is a symbolic link")
            meta = json.loads(read_file(meta_path))
            sums = meta["sha256"]
            if set(sums) != {MODEL_FILE, WEIGHTS_FILE}:
                raise ValueError(f"not a format-{FORMAT} entry")
            weights = read_file(entry / WEIGHTS_FILE)  # checked, then loaded from these bytes
            found = {
                MODEL_FILE: hashlib.sha256(read_file(entry / MODEL_FILE)).hexdigest(),
                WEIGHTS_FILE: hashlib.sha256(weights).hexdigest(),
            }
            for name, expected in sums.items():
                if found[name] != expected:
                    raise ValueError(f"checksum mismatch of {name}")
            loaded = _LOADED.get((entry, sums[WEIGHTS_FILE]))
            if loaded is not None:  # this process loaded these very weights already
                return loaded
            with np.load(io.BytesIO(weights), allow_pickle=False) as stored:
                arrays = [stored[f"w{i}"] for i in range(len(stored.files))]
            model = rebuild(architecture, meta["wrapper"], scope)
            _set_weights(model, arrays)
        except Exception as error:  # any damage means: rebuild, never trust it
            log.warning("cache entry %s is damaged (%s): rebuilding it", entry, error)
            remove(entry)
            return None
        stage = self._stage(model, entry, meta["info"], meta["wrapper"], architecture, scope, True)
        _remember(entry, sums[WEIGHTS_FILE], stage)
        return stage

    @staticmethod
    def _stage(model, entry, info, wrapper, architecture, scope, hit) -> Stage:
        def fresh() -> keras.Model:
            copy = rebuild(architecture, wrapper, scope)
            copy.set_weights(model.get_weights())
            return copy

        return Stage(model, entry / MODEL_FILE, info, hit, fresh)

    def _write(self, entry: Path, model: keras.Model, info: dict[str, Any]) -> tuple[str, str]:
        """Store the stage; return its wrapper and its weights' checksum."""
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        model.save(staging / MODEL_FILE, include_optimizer=True)
        weights = {f"w{i}": array for i, array in enumerate(model.get_weights())}
        np.savez(staging / WEIGHTS_FILE, **weights)
        wrapper = "quantize" if _quantize_wrapped(model) else ""
        sums = {name: _file_sha256(staging / name) for name in (MODEL_FILE, WEIGHTS_FILE)}
        meta = {"sha256": sums, "wrapper": wrapper, "info": info}
        (staging / "meta.json").write_text(strict_json.dumps(meta, indent=1, default=str))
        remove(entry)
        staging.rename(entry)
        return wrapper, sums[WEIGHTS_FILE]

    def get_or_build(
        self,
        stage: str,
        material: dict[str, Any],
        build: Callable[[], tuple[keras.Model, dict[str, Any]]],
        architecture: Architecture,
        scope: ScopeFactory = contextlib.nullcontext,
    ) -> Stage:
        """The cached model of this stage, or a freshly built (and stored) one.

        ``architecture`` makes the untrained model the cached weights are loaded into
        (for a pre-training stage: the builder's model; the QAT wrapper is re-applied
        when the stage's model had it).
        """
        entry = self.entry(stage, material)
        with self._locked(entry):
            if self.enabled and (cached := self._read(entry, architecture, scope)) is not None:
                log.info("%s: reusing cached model %s", stage, entry.name)
                return cached
            model, info = build()
            wrapper, weights_sha256 = self._write(entry, model, info)
            stage = self._stage(model, entry, info, wrapper, architecture, scope, False)
            _remember(entry, weights_sha256, dataclasses.replace(stage, hit=True))
            return stage
