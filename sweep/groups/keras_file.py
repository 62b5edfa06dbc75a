"""``model=keras_file``: a model a user trained elsewhere, loaded safely from its file.

The user's recipe (architecture, augmentations, schedule) is what they want to keep, so
the sweep starts from their weights (``train=none``) and optimizes those. The file is
untrusted input: it is read once into memory (:mod:`sweep.formats.keras_model`), its stored
classes are checked against Keras' own before anything is deserialized
(:mod:`sweep.groups.keras_classes`), and the model is built from the checked config under a
budget on its weights' memory, with weights read from a private copy of the very bytes
that were checked and hashed (:mod:`sweep.groups.keras_loading`); fine-tuning uses the
loss the file was compiled with (:mod:`sweep.groups.keras_objective`). The stage cache
keeps weights only and calls :meth:`KerasFile.build` again to get the architecture, so a
rebuilt model always comes from the checked file; the file's checksum is part of every
cache key and a tag of the run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sweep.backend import keras
from sweep.formats.keras_model import ModelFileError, StoredModel, read_model_file
from sweep.groups.keras_classes import check_stored_classes, custom_objects
from sweep.groups.keras_loading import PATH_SETTING, instantiate, named
from sweep.groups.keras_objective import stored_objective
from sweep.groups.model import ModelBuilder
from sweep.groups.objective import Objective
from sweep.settings import ConfigError
from sweep.stores.fingerprints import code_fingerprint
from sweep.stores.memos import sweep_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facts:
    """What building the model once told: its shapes, and whether it ends in softmax."""

    input_shape: tuple[int | None, ...] | list
    output_shape: tuple[int | None, ...] | list
    probabilities: bool
    parameters: int


_CHECKED: dict[tuple[str, str], tuple[tuple, StoredModel, dict[str, Any], Facts]] = sweep_dict()
"""(resolved path, custom module) -> (file signature, checked file, custom objects, facts)."""


def _signature(path: Path) -> tuple:
    """Size and mtime of what the reader reads: a change means reading (and checking) again."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def _ends_in_softmax(model: keras.Model) -> bool:
    last = model.get_layer(model.output_names[0]) if model.output_names else model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(last, "activation", None) is keras.activations.softmax


def _facts(model: keras.Model) -> Facts:
    return Facts(
        model.input_shape,
        model.output_shape,
        _ends_in_softmax(model),
        int(model.count_params()),
    )


def _shape(shape: Any) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _read(path: Path) -> StoredModel:
    """:func:`read_model_file`, its refusals naming the setting."""
    try:
        return read_model_file(path)
    except ModelFileError as error:
        raise named(error, path) from None


@dataclass
class KerasFile(ModelBuilder):
    """A trained Keras model file: ``.keras``, ``.h5``, or a SavedModel folder (tf_keras).

    ``custom_objects`` names a module of the user's own (``my_pkg.layers``): importing it
    runs that code (the user's, on purpose), and its public classes and functions are
    allowed in the file. Nothing else beyond Keras' and tfmot's classes is.
    """

    trained: ClassVar[bool] = True

    name: str = "keras_file"
    path: str | None = None
    custom_objects: str | None = None

    @property
    def location(self) -> Path:
        if not self.path or self.path == "???":
            raise ConfigError(
                f"{PATH_SETTING} is not set: model=keras_file needs "
                f"{PATH_SETTING}=<a .keras or .h5 file, or a SavedModel folder>."
            )
        return Path(os.path.expandvars(self.path)).expanduser().resolve()

    def _checked(self) -> tuple[StoredModel, dict[str, Any], Facts]:
        """The file read, checked and built once per process (again when it changes)."""
        path = self.location
        if not path.exists():
            raise ModelFileError(
                f"{PATH_SETTING}={path}: no such file or folder; expected a .keras or .h5 "
                "file, or a SavedModel folder"
            )
        key = (str(path), self.custom_objects or "")
        signature = _signature(path)
        known = _CHECKED.get(key)
        if known is None or known[0] != signature:
            stored = _read(path)
            custom = custom_objects(self.custom_objects)
            check_stored_classes(stored, custom, PATH_SETTING)
            facts = _facts(instantiate(stored, custom))
            log.info(
                "model file %s: %s, Keras %s, %s parameters, sha256 %s",
                path,
                stored.kind,
                stored.keras_version or "?",
                f"{facts.parameters:,}",
                stored.sha256[:16],
            )
            known = _CHECKED[key] = (signature, stored, custom, facts)
        return known[1], known[2], known[3]

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        stored, custom, _ = self._checked()
        return instantiate(stored, custom)

    def input_shape_for(self, data_shape: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
        stored, _, facts = self._checked()
        where = f"{PATH_SETTING}={stored.path}"
        if isinstance(facts.input_shape, list) or isinstance(facts.output_shape, list):
            raise ModelFileError(
                f"{where}: has several inputs or outputs; the sweep feeds one image tensor "
                "and reads one vector of class scores"
            )
        model_shape = tuple(facts.input_shape[1:])
        if any(d is None for d in model_shape):
            raise ModelFileError(
                f"{where}: its input shape {_shape(model_shape)} has unknown sizes; a "
                "microcontroller needs fixed ones: save the model with a fixed input shape"
            )
        if len(facts.output_shape) != 2 or facts.output_shape[-1] != num_classes:
            raise ModelFileError(
                f"{where}: outputs {_shape(facts.output_shape[1:])} but the data has "
                f"{num_classes} classes; expected one score per class, shape ({num_classes},)"
            )
        data = tuple(data_shape)
        fitting = {data, (*data, 1)} | ({data[:-1]} if data[-1:] == (1,) else set())
        if model_shape in fitting:
            return model_shape  # equal but for a channel axis of 1: the data is reshaped
        raise ModelFileError(
            f"{where}: takes inputs of shape {_shape(model_shape)} but the data's images are "
            f"{_shape(data)}; make them match (dataset=image_folder: dataset.image_size, "
            "dataset.color)"
        )

    def objective(self) -> Objective:
        stored, custom, facts = self._checked()
        return stored_objective(stored, facts.probabilities, custom)

    def provenance(self) -> dict[str, str]:
        stored, _, _ = self._checked()
        tags = {
            "model.sha256": stored.sha256,
            "model.format": stored.kind,
            "model.keras_version": stored.keras_version or "unknown",
        }
        if self.custom_objects:
            tags["model.custom_objects.code"] = code_fingerprint(modules=[self.custom_objects])
        return tags
