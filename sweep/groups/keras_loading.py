"""Building a checked model file: its config deserialized, its weights read, under bounds.

Runs only after :func:`sweep.groups.keras_classes.check_stored_classes` passed the file.
The model is built from the checked config (Keras 3 files through
:mod:`sweep.groups.keras3`) while a variable creator refuses weights beyond what the file
stores, before their memory is allocated; its weights are read from a private copy of the
very bytes that were checked and hashed (never from the path again, which may have
changed), and a SavedModel's graph is never loaded, only its variables checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sweep.backend import keras, tf
from sweep.errors import one_line
from sweep.formats.keras_model import ModelFileError, StoredModel, is_keras3
from sweep.groups.keras3 import legacy_architecture, set_keras3_weights
from sweep.groups.keras_classes import known_objects

PATH_SETTING = "model.path"
WEIGHT_SLACK_BYTES = 16 * 2**20
"""Memory a model's variables may take beyond the bytes its file stores (every weight of a
Keras model is saved, so a model whose variables outgrow its file is not that file's)."""


def named(error: ModelFileError, path: Path) -> ModelFileError:
    """A refusal of the format reader, naming the setting: ``model.path=<file>: ...``."""
    text = str(error)
    if text.startswith(PATH_SETTING):
        return error
    return ModelFileError(
        f"{PATH_SETTING}={text if text.startswith(str(path)) else f'{path}: {text}'}"
    )


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
            raise named(error, stored.path) from None
        except Exception as error:
            cause = error
            while cause.__cause__ or cause.__context__:  # the budget, raised inside Keras
                cause = cause.__cause__ or cause.__context__
                if isinstance(cause, ModelFileError):
                    raise named(cause, stored.path) from None
            raise ModelFileError(
                f"{PATH_SETTING}={stored.path}: cannot be built from its stored config and "
                f"weights ({type(error).__name__}: {one_line(error)[:300]})"
            ) from None
    return model
