"""Which classes a stored Keras config may name: Keras' own and tfmot's, and the user's.

A model file is checked against this list before anything in it is deserialized
(:mod:`sweep.formats.keras_model` says what each format would otherwise run): every
object of its architecture and of its loss and metrics must be a class or function of
tf_keras (layers, initializers, regularizers, constraints, activations, losses, metrics,
models, dtype policies) or of the optimization toolkit's pruning and quantization
wrappers, found by name in those modules; anything else stops the job with one line
naming the layer and ``model.custom_objects``, the setting that imports the user's own
module and allows its classes. Keras layers that run stored code are refused as such:
``Lambda`` (marshalled bytecode), and ``TFOpLambda`` / ``SlicingOpLambda`` unless the
TensorFlow function they name is a pure math, nn, array or operator function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from sweep.backend import keras, tfmot
from sweep.formats.keras_config import stored_objects
from sweep.formats.keras_model import ModelFileError, StoredModel

CUSTOM_SETTING = "model.custom_objects"
CODE_LAYERS = frozenset({"Lambda"})
"""Layers whose stored config is Python code: never deserialized."""
OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
"""Layers that call the TensorFlow function their config names (``x + 1`` in a functional
model is one): allowed only for the functions below."""
PURE_OP_PREFIXES = ("__operators__.", "math.", "nn.", "image.resize", "linalg.")
PURE_OPS = frozenset(
    {
        "reshape", "concat", "stack", "unstack", "split", "transpose", "expand_dims",
        "squeeze", "cast", "clip_by_value", "identity", "pad", "tile", "gather", "where",
        "ones_like", "zeros_like", "shape", "compat.v1.transpose", "compat.v1.squeeze",
        "compat.v1.gather", "broadcast_to", "einsum", "matmul", "range", "slice",
        "strided_slice", "reverse", "maximum", "minimum", "add", "multiply",
    }
)  # fmt: skip
DATA_MARKERS = frozenset(
    {"__tuple__", "__tensor__", "__numpy__", "__ellipsis__", "__slice__", "__keras_tensor__",
     "DTypePolicy", "FloatDTypePolicy"}
)  # fmt: skip
"""Objects of the ``.keras`` format that hold values (arrays, shapes, Keras 3's dtype
policies, which become their dtype's name), not classes."""
KERAS_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization")


def _public(module: ModuleType) -> dict[str, Any]:
    return {n: v for n, v in vars(module).items() if not n.startswith("_")}


@functools.cache
def known() -> tuple[frozenset[str], frozenset[str]]:
    """(class names, function names) that Keras or tfmot can deserialize by name."""
    objects = known_objects()
    classes = {n for n, v in objects.items() if inspect.isclass(v)} - CODE_LAYERS
    functions = {  # what a config may name as a function: activations, losses, metrics
        n
        for module in (keras.activations, keras.losses, keras.metrics)
        for n, v in _public(module).items()
        if inspect.isfunction(v) and n not in ("get", "deserialize", "serialize")
    }
    return frozenset(classes), frozenset(functions)


@functools.cache
def known_objects() -> dict[str, Any]:
    """Name -> the class or function of Keras or tfmot it names."""
    from tf_keras.src.layers import serialization as layer_serialization

    layer_serialization.populate_deserializable_objects()
    objects: dict[str, Any] = dict(layer_serialization.LOCAL.ALL_OBJECTS)
    for module in (
        keras.layers,
        keras.initializers,
        keras.regularizers,
        keras.constraints,
        keras.activations,
        keras.losses,
        keras.metrics,
        keras.models,
        keras.mixed_precision,
    ):
        objects.update(_public(module))
    for scope in (tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope()):
        for table in scope.custom_objects:
            objects.update(table)
    objects["Functional"] = keras.Model
    return objects


def custom_objects(module_name: str | None) -> dict[str, Any]:
    """The public classes and functions of the user's module (``model.custom_objects``).

    Importing it runs the user's own code, which is what the setting asks for.
    """
    if not module_name:
        return {}
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ModelFileError(
            f"{CUSTOM_SETTING}={module_name} cannot be imported ({type(error).__name__}: "
            f"{error}); it must name an importable module (on PYTHONPATH) defining your classes"
        ) from None
    return {
        name: value
        for name, value in _public(module).items()
        if inspect.isclass(value) or inspect.isfunction(value)
    }


def _pure_op(function: Any) -> bool:
    return isinstance(function, str) and (
        function in PURE_OPS or function.startswith(PURE_OP_PREFIXES)
    )


REMEDY = (
    f"name the module that defines it with {CUSTOM_SETTING}=<module> "
    "(e.g. my_pkg.layers, importable on PYTHONPATH)"
)


def _hint(what: str) -> str:
    return f"{what}; nothing stored in the file was run. If it is your own code, {REMEDY}"


def refusal(obj: Any, custom: Mapping[str, Any]) -> str | None:
    """Why a stored object may not be deserialized, or None when it may."""
    classes, functions = known()
    name = obj.class_name
    if name in DATA_MARKERS or name in custom:
        return None
    if name in CODE_LAYERS:
        return (
            f"{obj.where} is a {name} layer, whose Python code is stored in the file; the sweep "
            f"never runs stored code: write it as a layer class in your own module and {REMEDY}"
        )
    if name == "__lambda__":
        return _hint(f"{obj.where} is a Python lambda stored as code")
    if name == "function":  # the .keras format's reference to a function by name
        if obj.config not in functions and obj.config not in custom:
            return _hint(f"{obj.where} names function {obj.config!r}, which is not Keras'")
    elif name not in classes and name not in OP_LAYERS:
        origin = f" (from module {obj.module!r})" if obj.module else ""
        return _hint(f"{obj.where} is {name}{origin}, not a Keras layer or class")
    if obj.module is not None and obj.module.split(".")[0] not in (*KERAS_MODULES, "builtins"):
        return _hint(f"{obj.where} names module {obj.module!r}, which is not Keras'")
    if name in OP_LAYERS:
        function = obj.config.get("function") if isinstance(obj.config, dict) else None
        if not _pure_op(function):
            return _hint(f"{obj.where} calls tf.{function}, not a pure math/nn/array function")
    registered = obj.registered_name
    if registered and registered != name and ">" in registered and registered not in custom:
        return _hint(f"{obj.where} is registered as {registered!r}, not a Keras class")
    return None


def check_stored_classes(stored: StoredModel, custom: Mapping[str, Any], setting: str) -> None:
    """Refuse the model (one line naming ``setting``, the layer and the remedy) if any object
    of its architecture, loss or metrics is not a known class, before any is deserialized."""
    training = stored.training or {}
    trees = [stored.architecture, {k: training.get(k) for k in ("loss", "metrics")}]
    for tree in trees:
        for obj in stored_objects(tree, stored.path):
            why = refusal(obj, custom)
            if why is not None:
                raise ModelFileError(f"{setting}={stored.path}: {why}.")
