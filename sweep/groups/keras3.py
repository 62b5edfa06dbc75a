"""A Keras 3 model file, read into Keras 2 (tf_keras): its config translated, its weights set.

TensorFlow 2.16+ trains with Keras 3 by default, so that is what most model files a user
brings are; the optimization toolkit (pruning, QAT) runs on Keras 2 only. Both describe a
model as JSON with the same layer classes, differing in a few places this module
translates (after the stored classes were checked, :mod:`sweep.groups.keras_classes`):

- a layer's ``dtype`` is a ``DTypePolicy`` object in Keras 3, a string in Keras 2;
- ``InputLayer`` has ``batch_shape`` for ``batch_input_shape``;
- a functional layer's ``inbound_nodes`` name their inputs inside ``__keras_tensor__``
  objects, where Keras 2 lists ``[layer, node, tensor, kwargs]``;
- Keras 3 adds arguments Keras 2 lacks (``quantization_config``, ``lora_rank``, an
  initializer's ``input_axes``, a random layer's ``data_format``): dropped when unset (or
  set to what Keras 2 always does: ``channels_last``), refused (one line) when set, since
  the model would then not be the file's.

The result is built with Keras 2's legacy deserializer and the weights are set layer by
layer, by name, from the file's HDF5 (:func:`sweep.formats.keras3_weights.keras3_weights`),
each checked against the shape Keras 2 gives it before it is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from sweep.backend import keras
from sweep.formats.keras3_weights import keras3_weights
from sweep.formats.keras_model import KERAS_ZIP, ModelFileError, StoredModel

POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy", "Policy"})
_LAYER_KEYS = frozenset(
    {"name", "trainable", "dtype", "dynamic", "input_shape", "batch_input_shape", "batch_size",
     "input_dim", "autocast", "activity_regularizer"}
)  # fmt: skip
"""What Keras 2's base Layer takes besides a class's own arguments."""
_NODE_KWARGS_DROPPED = frozenset({"training", "mask"})
"""Call arguments Keras 3 records at build time (``training=False``) that Keras 2 must not
replay: Dropout would stay off while fine-tuning."""


def _accepted(cls: type) -> tuple[set[str], bool]:
    """The keyword arguments ``cls`` takes, and whether it forwards others to Layer."""
    names, forwards = set(), False
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                forwards = True
            elif parameter.name != "self":
                names.add(parameter.name)
    return names, forwards


_KERAS2_IMPLIES = {"data_format": "channels_last"}
"""Arguments Keras 3 writes for every layer of a class (``RandomFlip``'s ``data_format``)
whose value is what Keras 2's class, lacking the argument, always does."""


def _unset(key: str, value: Any) -> bool:
    return value in (None, False, 0, "", [], {}) or _KERAS2_IMPLIES.get(key, object()) == value


class Translator:
    """Keras 3 config → Keras 2 legacy config, for the classes in ``classes``."""

    def __init__(self, stored: StoredModel, classes: Mapping[str, Any]) -> None:
        self.stored, self.classes = stored, classes

    def refuse(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"model.path={self.stored.path}: saved by Keras {self.stored.keras_version}: {what}; "
            "save it from tf_keras (Keras 2) instead"
        )

    def _arguments(self, class_name: str, config: dict[str, Any], owner: str) -> dict[str, Any]:
        cls = self.classes.get(class_name)
        if not inspect.isclass(cls) or issubclass(cls, keras.Model):
            return config  # a model's config is read by its from_config, not its constructor
        names, forwards = _accepted(cls)
        is_layer = issubclass(cls, keras.layers.Layer)
        kept = {}
        for key, value in config.items():
            if key in names or (is_layer and forwards and key in _LAYER_KEYS):
                kept[key] = value
            elif not _unset(key, value):
                shown = repr(value) if len(repr(value)) < 60 else f"{repr(value)[:57]}..."
                raise self.refuse(f"{owner} sets {key}={shown}, which Keras 2's {class_name} lacks")
        return kept

    def _node(self, node: Any, owner: str) -> list[list[Any]]:
        if not isinstance(node, dict):  # already Keras 2's form
            return node
        args, kwargs = node.get("args") or [], dict(node.get("kwargs") or {})
        if len(args) != 1:
            raise self.refuse(f"layer {owner!r} is called with {len(args)} positional inputs")
        inputs = args[0] if isinstance(args[0], list) else [args[0]]
        kwargs = {k: v for k, v in kwargs.items() if k not in _NODE_KWARGS_DROPPED}
        entries = []
        for tensor in inputs:
            history = (tensor.get("config") or {}).get("keras_history") if isinstance(
                tensor, dict
            ) else None  # fmt: skip
            if not isinstance(history, list) or len(history) != 3:
                raise self.refuse(f"layer {owner!r} takes an input that is not a layer's output")
            entries.append([*history, kwargs])
        return entries

    def layer(self, node: dict[str, Any]) -> dict[str, Any]:
        """One object: a layer, a model, an initializer, a regularizer, a loss."""
        class_name = node["class_name"]
        config = node.get("config")
        if isinstance(config, dict):
            owner = f"layer {config.get('name', class_name)!r}"
            config = self.tree(config)
            if class_name == "InputLayer" and "batch_shape" in config:
                config["batch_input_shape"] = config.pop("batch_shape")
            config = self._arguments(class_name, config, owner)
            for key in ("input_layers", "output_layers"):
                if isinstance(config.get(key), list) and config[key] and isinstance(
                    config[key][0], str
                ):  # fmt: skip
                    config[key] = [config[key]]  # one input or output, flattened by Keras 3
        translated: dict[str, Any] = {"class_name": class_name, "config": config}
        if "name" in node:
            translated["name"] = node["name"]
        if "inbound_nodes" in node:
            name = node.get("name", class_name)
            translated["inbound_nodes"] = [self._node(n, name) for n in node["inbound_nodes"]]
        return translated

    def tree(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.tree(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("class_name") in POLICIES and node.get("module", "keras").startswith("keras"):
            return (node.get("config") or {}).get("name", "float32")
        if isinstance(node.get("class_name"), str):
            return self.layer(node)
        return {key: self.tree(value) for key, value in node.items()}


def legacy_architecture(stored: StoredModel, classes: Mapping[str, Any]) -> dict[str, Any]:
    """The file's Keras 3 architecture as a Keras 2 config (the classes already checked)."""
    return Translator(stored, classes).layer(stored.architecture)


def legacy_training(stored: StoredModel, classes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The loss and metrics of a Keras 3 file, for Keras 2."""
    if stored.training is None:
        return None
    translator = Translator(stored, classes)
    return {k: translator.tree(stored.training.get(k)) for k in ("loss", "metrics")}


def _weight_keys(stored: StoredModel, model: keras.Model) -> dict[str, str]:
    """Each layer's key in the file: its name in an HDF5 file; in a ``.keras`` file the
    path Keras' saving library gives it, its class in snake case, numbered from the second
    of a class on (``dense``, ``dense_1``), since layer names vary between two instances."""
    from tf_keras.src.utils.generic_utils import to_snake_case

    if stored.kind != KERAS_ZIP:
        return {layer.name: layer.name for layer in model.layers}
    keys, used = {}, {}
    for layer in model.layers:
        key = to_snake_case(type(layer).__name__)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[layer.name] = key
    return keys


def set_keras3_weights(stored: StoredModel, model: keras.Model) -> None:
    """Each layer's weights from the file, shapes checked before anything is read."""
    keys = _weight_keys(stored, model)
    expected = {
        keys[layer.name]: [(tuple(w.shape), w.dtype.as_numpy_dtype) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }
    arrays = keras3_weights(stored, expected)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(arrays[keys[layer.name]])
