"""The objects a stored Keras config declares, found without deserializing any of them.

Keras finds a class for every dict with a ``class_name`` in a model's config (and imports
the ``module`` it names, in the ``.keras`` format), so that is what the check before
loading must see: every such object, with the layer it belongs to, for a one-line refusal
that names the layer. The walk is bounded, so a crafted config cannot make the check
itself the attack.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.formats.keras_model import ModelFileError

MAX_OBJECTS = 20_000
"""Objects (layers, initializers, ...) declared in a config; a model for a microcontroller
has tens to hundreds."""
MAX_DEPTH = 100
"""Nesting of the JSON config (models inside models inside wrappers)."""


@dataclass(frozen=True)
class StoredObject:
    """One object a config declares: what Keras would look up, import or call for it."""

    layer: str  # the name of the layer it belongs to ("" at the top)
    key: str  # where in that layer's config ("" for the layer itself)
    class_name: str
    module: str | None
    registered_name: str | None
    config: Any

    @property
    def where(self) -> str:
        where = f"layer {self.layer!r}" if self.layer else "the model"
        return f"{where} ({self.key})" if self.key else where


_LAYER_KEYS = frozenset({"layers", "layer", "cell", "cells", "forward_layer", "backward_layer"})
"""Keys of a config under which layers sit (a model's layers, a wrapper's or an RNN's)."""
_NOT_LOOKED_UP = frozenset({"build_config", "shared_object_id"})
"""Keys that only hold shapes and ids: nothing is looked up from them."""


def stored_objects(tree: Any, where: Path) -> Iterator[StoredObject]:
    """Every object (a dict with a ``class_name``) in a stored config, depth-first, each with
    the layer it belongs to.

    Bounded: more than :data:`MAX_OBJECTS` objects or :data:`MAX_DEPTH` levels of
    nesting is refused, so a crafted config cannot make the check itself the attack.
    """
    # (node, the layer it belongs to, the key of that layer's config it sits under,
    #  whether the node is a layer itself, depth)
    stack: list[tuple[Any, str, str, bool, int]] = [(tree, "", "", True, 0)]
    count = 0
    while stack:
        node, layer, key, is_layer, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{where}: the stored config nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            stack.extend((item, layer, key, is_layer, depth + 1) for item in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("class_name"), str):
            count += 1
            if count > MAX_OBJECTS:
                raise ModelFileError(
                    f"{where}: the stored config declares more than {MAX_OBJECTS:,} objects"
                )
            config = node.get("config")
            if is_layer:
                name = config.get("name") if isinstance(config, dict) else None
                layer = name if isinstance(name, str) else str(node.get("name", layer))
                key = ""
            module, registered = node.get("module"), node.get("registered_name")
            yield StoredObject(
                layer,
                key,
                node["class_name"],
                module if isinstance(module, str) else None,
                registered if isinstance(registered, str) else None,
                config,
            )
        for child_key, child in reversed(list(node.items())):
            if child_key in _NOT_LOOKED_UP or not isinstance(child, dict | list):
                continue
            if child_key == "config":
                stack.append((child, layer, key, False, depth + 1))
            elif child_key in _LAYER_KEYS:
                stack.append((child, layer, key, True, depth + 1))
            else:
                stack.append((child, layer, key or child_key, False, depth + 1))
