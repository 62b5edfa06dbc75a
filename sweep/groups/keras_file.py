"""``model=keras_file``: a model a user trained elsewhere, loaded safely from its file.

The user's recipe (architecture, augmentations, schedule) is what they want to keep, so
the sweep starts from their weights (``train=none``) and optimizes those. The file is
untrusted input: it is read once into memory (:mod:`sweep.formats.keras_model`), its stored
classes are checked against Keras' own before anything is deserialized
(:mod:`sweep.groups.keras_classes`), the model is built from the checked config under a
budget on the memory its weights may take, and its weights are read from a private copy of
the very bytes that were checked and hashed. The stage cache keeps weights only and calls
:meth:`KerasFile.build` again to get the architecture, so a rebuilt model always comes
from the checked file; the file's checksum is part of every cache key and a tag of the run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sweep.backend import keras, tf
from sweep.errors import one_line
from sweep.formats.keras_model import ModelFileError, StoredModel, is_keras3, read_model_file
from sweep.groups.keras3 import legacy_architecture, legacy_training, set_keras3_weights
from sweep.groups.keras_classes import check_stored_classes, custom_objects, known_objects
from sweep.groups.model import ModelBuilder
from sweep.groups.objective import Objective, for_outputs
from sweep.settings import ConfigError
from sweep.stores.fingerprints import code_fingerprint
from sweep.stores.memos import sweep_dict

log = logging.getLogger(__name__)

PATH_SETTING = "model.path"
WEIGHT_SLACK_BYTES = 16 * 2**20
"""Memory a model's variables may take beyond the bytes its file stores (every weight of a
Keras model is saved, so a model whose variables outgrow its file is not that file's)."""


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


@contextlib.contextmanager
def weight_budget(path: Path, limit: int) -> Iterator[None]:
    """Refuse, before allocating it, a variable that takes the model's weights over ``limit``
    bytes: a config declaring a billion-unit Dense must not take the machine's memory."""
    used = [0]

    def creator(next_creator, **kwargs):
        shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
        if shape is not None:
            shape = tf.TensorShape(shape)
            if shape.is_fully_defined():
                itemsize = tf.as_dtype(dtype).size if dtype is not None else 4
                used[0] += shape.num_elements() * itemsize
                if used[0] > limit:
                    raise ModelFileError(
                        f"{PATH_SETTING}={path}: its stored architecture needs over {limit:,} "
                        "bytes of weights, more than the file holds; refused before allocating"
                    )
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        yield


def _write_private_copy(stored: StoredModel, folder: Path) -> None:
    for name, blob in stored.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)


def _deserialize(stored: StoredModel, custom: dict[str, Any]) -> keras.Model:
    architecture = copy.deepcopy(stored.architecture)
    if is_keras3(stored):
        architecture = legacy_architecture(stored, {**known_objects(), **custom})
    elif stored.style == "keras":
        from tf_keras.src.saving import serialization_lib

        return serialization_lib.deserialize_keras_object(
            architecture, custom_objects=custom, safe_mode=True
        )
    from tf_keras.src.saving.legacy import model_config

    return model_config.model_from_config(architecture, custom_objects=custom)


def _load_weights(stored: StoredModel, model: keras.Model, folder: Path) -> None:
    if is_keras3(stored):
        set_keras3_weights(stored, model)
    elif stored.kind == "keras":
        from tf_keras.src.saving import saving_lib

        saving_lib.load_weights_only(model, str(folder / "model.keras"))
    elif stored.kind == "h5":
        model.load_weights(str(folder / "model.h5"))
    else:  # a SavedModel's variables: a checkpoint of plain tensors, its graph is never read
        status = model.load_weights(str(folder / "variables" / "variables"))
        status.assert_existing_objects_matched()


def instantiate(stored: StoredModel, custom: dict[str, Any]) -> keras.Model:
    """The model of a checked file: built from its config, with the file's weights."""
    limit = stored.size + WEIGHT_SLACK_BYTES
    with (
        tempfile.TemporaryDirectory(prefix="sweep-model-") as private,
        keras.utils.custom_object_scope(custom),
        weight_budget(stored.path, limit),
    ):
        os.chmod(private, 0o700)
        _write_private_copy(stored, Path(private))
        try:
            model = _deserialize(stored, custom)
            if not isinstance(model, keras.Model):
                raise ModelFileError(
                    f"{PATH_SETTING}={stored.path}: holds a {type(model).__name__}, not a model"
                )
            _load_weights(stored, model, Path(private))
        except ModelFileError as error:
            raise _named(error, stored.path) from None
        except Exception as error:
            cause = error
            while cause.__cause__ or cause.__context__:  # the budget, raised inside Keras
                cause = cause.__cause__ or cause.__context__
                if isinstance(cause, ModelFileError):
                    raise _named(cause, stored.path) from None
            raise ModelFileError(
                f"{PATH_SETTING}={stored.path}: cannot be built from its stored config and "
                f"weights ({type(error).__name__}: {one_line(error)[:300]})"
            ) from None
    return model


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


def _single(value: Any, what: str, path: Path) -> Any:
    """A compile setting of a one-output model (Keras stores lists or dicts per output)."""
    if isinstance(value, dict) and "class_name" not in value:
        value = list(value.values())
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ModelFileError(f"{PATH_SETTING}={path}: has {len(value)} {what}; expected one")
        return value[0]
    return value


def _identifier_name(identifier: Any) -> str:
    if isinstance(identifier, dict):
        inner = identifier.get("config")
        name = inner if isinstance(inner, str) else identifier.get("class_name", "")
        return str(name)
    return str(identifier)


_ACCURACY = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def _flat(tree: Any) -> list[Any]:
    if isinstance(tree, dict) and "class_name" not in tree:  # one entry per output
        tree = list(tree.values())
    if isinstance(tree, list | tuple):
        return [leaf for item in tree for leaf in _flat(item)]
    return [] if tree is None else [tree]


def _metrics(stored_metrics: Any) -> list[Any]:
    """The file's metrics, with every accuracy as Keras' "accuracy": tf_keras stores
    ``metrics=["accuracy"]`` in HDF5 as ``categorical_accuracy``, which would misreport
    with integer labels; "accuracy" picks the variant that matches the labels."""
    kept: list[Any] = ["accuracy"]
    for metric in _flat(stored_metrics):
        name = metric.get("config", {}).get("name") if isinstance(metric, dict) else metric
        if isinstance(name, str) and (name in _ACCURACY or name.endswith("accuracy")):
            continue
        try:
            keras.metrics.get(copy.deepcopy(metric))
        except Exception as error:
            log.warning("the model file's metric %s is left out (%s)", name, one_line(error))
            continue
        kept.append(metric)
    return kept


def stored_objective(stored: StoredModel, facts: Facts, custom: dict[str, Any]) -> Objective:
    """The loss (and metrics) the file was compiled with, or, when it was saved without
    one, sparse categorical cross-entropy on what its head outputs."""
    training = stored.training or {}
    if is_keras3(stored):
        training = legacy_training(stored, {**known_objects(), **custom}) or {}
    loss = training.get("loss")
    if loss is None:
        objective = for_outputs(facts.probabilities)
        log.info(
            "%s=%s was saved without a loss: fine-tuning with %s",
            PATH_SETTING,
            stored.path,
            objective.description,
        )
        return objective
    loss = _single(loss, "losses", stored.path)
    metrics = _metrics(training.get("metrics"))

    def make_loss() -> Any:
        with keras.utils.custom_object_scope(custom):
            return keras.losses.get(copy.deepcopy(loss))

    try:
        made = make_loss()
    except Exception as error:
        raise ModelFileError(
            f"{PATH_SETTING}={stored.path}: its loss {_identifier_name(loss)!r} cannot be "
            f"rebuilt ({one_line(error)[:200]})"
        ) from None
    name = _identifier_name(loss)
    one_hot = "sparse" not in name.lower()
    settings = made.get_config() if hasattr(made, "get_config") else {}
    if isinstance(settings, dict) and "from_logits" in settings:
        name += f" (from_logits={settings['from_logits']})"
    labels = "one-hot" if one_hot else "integer"
    return Objective(
        make_loss, lambda: list(metrics), one_hot, f"the model's own loss {name}, {labels} labels"
    )


def _named(error: ModelFileError, path: Path) -> ModelFileError:
    """A refusal of the format reader, naming the setting: ``model.path=<file>: ...``."""
    text = str(error)
    if text.startswith(PATH_SETTING):
        return error
    return ModelFileError(
        f"{PATH_SETTING}={text if text.startswith(str(path)) else f'{path}: {text}'}"
    )


def _read(path: Path) -> StoredModel:
    """:func:`read_model_file`, its refusals naming the setting."""
    try:
        return read_model_file(path)
    except ModelFileError as error:
        raise _named(error, path) from None


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
        return stored_objective(stored, facts, custom)

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
