"""Cache of trained and pre-trained models, so quantizers never retrain.

An entry is keyed by a hash of everything that determines the stage (data
fingerprint, component settings, seed, library versions, the source of the
components' classes). Entries are written
to a temporary folder and renamed into place, carry a checksum that is checked
on every read (a damaged entry is rebuilt), and are built under a file lock, so
two parallel jobs needing the same model train it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sweep.backend import keras

log = logging.getLogger(__name__)

_VERSIONED = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "sweep")
MODEL_FILE = "model.h5"
# Makes the custom-object scope a saved model needs to load (e.g. QAT layers).
ScopeFactory = Callable[[], contextlib.AbstractContextManager]


def library_versions() -> dict[str, str]:
    """Versions that change what a stage produces (also logged as MLflow tags)."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


@functools.cache
def _source_bytes(path: str) -> bytes:
    """A source file's bytes, read once per process (one sweep keeps one key)."""
    return Path(path).read_bytes()


def _source_file(cls: type) -> str | None:
    if cls.__module__.split(".")[0] in sys.stdlib_module_names or cls is object:
        return None
    try:
        return inspect.getsourcefile(cls)
    except TypeError:  # built-in classes have no source
        return None


def code_fingerprint(*components: Any) -> str:
    """Hash of the source files that define these components' classes and their bases.

    Editing a model builder, a trainer or a pre-training optimizer, ours or a
    user's own (wherever its file lives), invalidates the stages they built.
    """
    files = sorted(
        {path for obj in components for cls in type(obj).__mro__ if (path := _source_file(cls))}
    )
    return hashlib.sha256(b"".join(_source_bytes(f) for f in files)).hexdigest()[:16]


def digest(material: Any) -> str:
    """A stable hash of JSON-able settings."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Stage:
    """A model produced by one stage, where its file is, and how it was obtained."""

    model: keras.Model
    path: Path
    info: dict[str, Any]  # e.g. {"seconds": 14.2, "history": [...]}, as built
    hit: bool  # True when read from the cache


class StageCache:
    """Build-or-load of stage models under ``root``; ``enabled=False`` always rebuilds."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root, self.enabled = root, enabled

    def entry(self, stage: str, material: dict[str, Any]) -> Path:
        key = digest({"material": material, "versions": library_versions()})
        return self.root / stage / key[:24]

    @contextlib.contextmanager
    def _locked(self, entry: Path) -> Iterator[None]:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with open(entry.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self, path: Path, scope: ScopeFactory = contextlib.nullcontext) -> keras.Model:
        with scope():
            return keras.models.load_model(path, compile=False)

    def _read(self, entry: Path, scope: ScopeFactory) -> Stage | None:
        meta_path, model_path = entry / "meta.json", entry / MODEL_FILE
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if _file_sha256(model_path) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            model = self.load(model_path, scope)
        except Exception as error:  # any damage means: rebuild, never trust it
            log.warning("cache entry %s is damaged (%s): rebuilding it", entry, error)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return Stage(model, model_path, meta["info"], hit=True)

    def _write(self, entry: Path, model: keras.Model, info: dict[str, Any]) -> Path:
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        model.save(staging / MODEL_FILE, include_optimizer=True)
        meta = {"sha256": _file_sha256(staging / MODEL_FILE), "info": info}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        shutil.rmtree(entry, ignore_errors=True)
        staging.rename(entry)
        return entry / MODEL_FILE

    def get_or_build(
        self,
        stage: str,
        material: dict[str, Any],
        build: Callable[[], tuple[keras.Model, dict[str, Any]]],
        scope: ScopeFactory = contextlib.nullcontext,
    ) -> Stage:
        """The cached model of this stage, or a freshly built (and stored) one."""
        entry = self.entry(stage, material)
        with self._locked(entry):
            if self.enabled and (cached := self._read(entry, scope)) is not None:
                log.info("%s: reusing cached model %s", stage, entry.name)
                return cached
            model, info = build()
            return Stage(model, self._write(entry, model, info), info, hit=False)
