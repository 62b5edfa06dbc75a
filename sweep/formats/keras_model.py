"""Reading a Keras model file a user hands the tool, without running anything stored in it.

A Keras model file carries code as well as data, in every format:

- HDF5 (``.h5``): a Lambda layer's marshalled bytecode runs when the model is built, and
  tf_keras 2.21's HDF5 loader ignores ``safe_mode`` (tests/test_hardening.py shows it);
- ``.keras`` (a zip): each object of its JSON config names a ``module`` that Keras
  *imports* (``importlib.import_module``) to find the class, and a TFOpLambda layer names
  a TensorFlow function that Keras calls with the layer's input;
- a SavedModel folder: besides Keras' JSON metadata it holds a TensorFlow graph whose
  functions and resource initializers run when ``tf.saved_model.load`` reads it.

So this module reads bytes and parses only JSON, HDF5 attributes and one protobuf (the
SavedModel's ``keras_metadata.pb``; its ``saved_model.pb`` graph is never read). It hands
back the stored architecture and training settings as plain JSON for the caller to check
(:mod:`sweep.formats.keras_config` finds its objects, :mod:`sweep.groups.keras_classes`
judges them) *before* anything is deserialized, and the bytes it read, so that what is
checked, what is hashed into cache keys and what is finally loaded is one and the same
copy, even if the file changes meanwhile. Every size is bounded before it is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.errors import UserError

MAX_MODEL_BYTES = 256 * 2**20
"""A model file (or the files read from a SavedModel folder) larger than this is refused:
a microcontroller model is kilobytes, a float model of millions of parameters tens of MB."""
MAX_CONFIG_BYTES = 16 * 2**20
"""The stored JSON architecture and training settings, each."""

KERAS_ZIP, HDF5, SAVED_MODEL = "keras", "h5", "savedmodel"
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_KERAS_METADATA = "keras_metadata.pb"
_VALID = "a .keras file, an .h5 file or a SavedModel folder saved by Keras (model.save)"


class ModelFileError(UserError):
    """A model file is missing, malformed, too large, or holds what the tool will not run."""


@dataclass(frozen=True)
class StoredModel:
    """What a model file holds, read once: its bytes and its stored settings as JSON.

    ``files`` maps the names the loader needs (``model.keras``, ``model.h5``, or a
    SavedModel's ``keras_metadata.pb`` and ``variables/...``) to the bytes read;
    ``architecture`` is the model's config (``{"class_name": ..., "config": ...}``) and
    ``training`` its compile settings (``loss``, ``metrics``), ``None`` when it was saved
    uncompiled. ``style`` is how the config was serialized: ``"keras"`` (the ``.keras``
    format's, with ``module`` keys) or ``"legacy"`` (HDF5 and SavedModel).
    """

    path: Path
    kind: str
    sha256: str
    files: dict[str, bytes] = field(repr=False)
    architecture: dict[str, Any] = field(repr=False)
    training: dict[str, Any] | None = field(repr=False)
    keras_version: str = ""

    @property
    def style(self) -> str:
        return "keras" if self.kind == KERAS_ZIP else "legacy"

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


def _too_big(path: Path, what: str, size: int, limit: int) -> ModelFileError:
    return ModelFileError(
        f"{path}: {what} is {size:,} bytes, over the {limit:,}-byte limit "
        "(sweep.formats.keras_model); is it the model file?"
    )


def _read_file(path: Path, limit: int, what: str) -> bytes:
    """A file's bytes, refused before reading if larger than ``limit``."""
    size = path.stat().st_size
    if size > limit:
        raise _too_big(path, what, size, limit)
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:  # grew while we looked
        raise _too_big(path, what, len(data), limit)
    return data


def _json(text: bytes | str, path: Path, what: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise _too_big(path, what, len(text), MAX_CONFIG_BYTES)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: {what} is not valid JSON ({exc})") from None


def _untuple(tree: Any) -> Any:
    """Legacy SavedModel metadata writes tuples as ``{"class_name": "__tuple__", "items"}``."""
    if isinstance(tree, dict):
        if tree.get("class_name") == "__tuple__" and isinstance(tree.get("items"), list):
            return [_untuple(v) for v in tree["items"]]
        return {k: _untuple(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_untuple(v) for v in tree]
    return tree


def _architecture(tree: Any, path: Path) -> dict[str, Any]:
    if not isinstance(tree, dict) or not isinstance(tree.get("class_name"), str):
        raise ModelFileError(
            f"{path}: the stored architecture has no class_name; expected {_VALID}"
        )
    return {k: v for k, v in tree.items() if k != "compile_config"}


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def is_keras3(stored: StoredModel) -> bool:
    """Saved by Keras 3 (TensorFlow 2.16+'s default): read through a translation."""
    return _major(stored.keras_version) >= 3


def _read_keras_zip(path: Path, data: bytes) -> StoredModel:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = {info.filename: info for info in archive.infolist()}
        for info in entries.values():  # zipfile never inflates more than an entry declares
            if info.file_size > MAX_MODEL_BYTES:
                raise _too_big(path, info.filename, info.file_size, MAX_MODEL_BYTES)
        declared = sum(info.file_size for info in entries.values())
        if declared > 2 * MAX_MODEL_BYTES:
            raise _too_big(path, "the unpacked archive", declared, 2 * MAX_MODEL_BYTES)
        if "config.json" not in entries:
            raise ModelFileError(f"{path}: a zip without config.json, not a .keras model")
        if "model.weights.h5" not in entries:
            raise ModelFileError(
                f"{path}: holds no model.weights.h5 (found {sorted(entries)}); "
                "save the model with model.save('model.keras')"
            )
        for name in ("config.json", "metadata.json"):
            if name in entries and entries[name].file_size > MAX_CONFIG_BYTES:
                raise _too_big(path, name, entries[name].file_size, MAX_CONFIG_BYTES)
        config = _json(archive.read("config.json"), path, "config.json")
        meta = (
            _json(archive.read("metadata.json"), path, "metadata.json")
            if "metadata.json" in entries
            else {}
        )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable .keras archive ({exc})") from None
    version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
    training = config.get("compile_config") if isinstance(config, dict) else None
    return StoredModel(
        path,
        KERAS_ZIP,
        hashlib.sha256(data).hexdigest(),
        {"model.keras": data},
        _architecture(config, path),
        training if isinstance(training, dict) else None,
        version,
    )


def _attribute(attrs: Any, name: str) -> str | None:
    if name not in attrs:
        return None
    value = attrs[name]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value)


def _read_hdf5(path: Path, data: bytes) -> StoredModel:
    import h5py  # a dependency of TensorFlow; only needed for this format

    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            config_text = _attribute(h5.attrs, "model_config")
            training_text = _attribute(h5.attrs, "training_config")
            version = _attribute(h5.attrs, "keras_version") or ""
            has_weights = "model_weights" in h5
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    if config_text is None:
        raise ModelFileError(
            f"{path}: an HDF5 file without a model_config attribute (weights only?); "
            "save the whole model with model.save('model.h5')"
        )
    if not has_weights:
        raise ModelFileError(f"{path}: an HDF5 model without model_weights")
    training = _json(training_text, path, "training_config") if training_text else None
    return StoredModel(
        path,
        HDF5,
        hashlib.sha256(data).hexdigest(),
        {"model.h5": data},
        _architecture(_json(config_text, path, "model_config"), path),
        training if isinstance(training, dict) else None,
        version,
    )


def _saved_model_files(folder: Path) -> dict[str, bytes]:
    """keras_metadata.pb and the variables checkpoint: all the loader reads of a folder."""
    wanted = [folder / _KERAS_METADATA, folder / "variables" / "variables.index"]
    wanted += sorted((folder / "variables").glob("variables.data-*"))
    missing = [str(p.relative_to(folder)) for p in wanted[:2] if not p.is_file()]
    if missing:
        what = (
            "not a Keras SavedModel (no keras_metadata.pb: saved by tf.saved_model.save or "
            "Keras 3's model.export?)"
            if _KERAS_METADATA in missing
            else f"a SavedModel folder without {', '.join(missing)}"
        )
        raise ModelFileError(f"{folder}: {what}; expected {_VALID}")
    files: dict[str, bytes] = {}
    total = 0
    for file in wanted:
        if not file.is_file():
            raise ModelFileError(f"{file}: not a regular file")
        total += file.stat().st_size
        if total > MAX_MODEL_BYTES:
            raise _too_big(
                folder, "the SavedModel's metadata and variables", total, MAX_MODEL_BYTES
            )
        files[str(file.relative_to(folder))] = _read_file(file, MAX_MODEL_BYTES, file.name)
    return files


def _root_metadata(folder: Path, blob: bytes) -> dict[str, Any]:
    from google.protobuf.message import DecodeError
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(blob)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{folder}: keras_metadata.pb cannot be parsed ({exc})") from None
    roots = [node for node in metadata.nodes if node.node_path == "root"]
    if not roots:
        raise ModelFileError(f"{folder}: keras_metadata.pb describes no root model")
    root = _json(roots[0].metadata, folder, "the root model's metadata")
    if not isinstance(root, dict):
        raise ModelFileError(f"{folder}: the root model's metadata is not a JSON object")
    return _untuple(root)


def _read_saved_model(folder: Path) -> StoredModel:
    files = _saved_model_files(folder)
    root = _root_metadata(folder, files[_KERAS_METADATA])
    version = str(root.get("keras_version", ""))
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}:{len(files[name])};".encode())
        digest.update(files[name])
    training = root.get("training_config")
    return StoredModel(
        folder,
        SAVED_MODEL,
        digest.hexdigest(),
        files,
        _architecture({"class_name": root.get("class_name"), "config": root.get("config")}, folder),
        training if isinstance(training, dict) else None,
        version,
    )


def read_model_file(path: Path) -> StoredModel:
    """Read a ``.keras`` file, an ``.h5`` file or a SavedModel folder, by content.

    Nothing stored in it is deserialized: the result holds JSON and bytes only.
    """
    path = Path(path)
    if path.is_dir():
        return _read_saved_model(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file or folder; expected {_VALID}")
    data = _read_file(path, MAX_MODEL_BYTES, "the model file")
    if data.startswith(_ZIP_MAGIC):
        return _read_keras_zip(path, data)
    if data.startswith(_HDF5_MAGIC):
        return _read_hdf5(path, data)
    head = data[:8].hex() or "empty"
    raise ModelFileError(f"{path}: not a Keras model file (first bytes {head}); expected {_VALID}")
