"""The loss a model file was compiled with, as the trainer's objective for fine-tuning.

Pruning and QAT fine-tune a user's model; with another loss than its own they would
optimize something else. Keras stores the compile settings with the model (the ``.keras``
format's ``compile_config``, HDF5's and SavedModel's ``training_config``), as names or
configs of classes the file check has already allowed.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from sweep.backend import keras
from sweep.errors import one_line
from sweep.formats.keras_model import ModelFileError, StoredModel, is_keras3
from sweep.groups.keras3 import legacy_training
from sweep.groups.keras_classes import known_objects
from sweep.groups.keras_loading import PATH_SETTING
from sweep.groups.objective import Objective, for_outputs

log = logging.getLogger(__name__)


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


def stored_objective(stored: StoredModel, probabilities: bool, custom: dict[str, Any]) -> Objective:
    """The loss (and metrics) the file was compiled with, or, when it was saved without
    one, sparse categorical cross-entropy on what its head outputs (``probabilities``: it
    ends in softmax)."""
    training = stored.training or {}
    if is_keras3(stored):
        training = legacy_training(stored, {**known_objects(), **custom}) or {}
    loss = training.get("loss")
    if loss is None:
        objective = for_outputs(probabilities)
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
