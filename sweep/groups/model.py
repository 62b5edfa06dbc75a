"""The `model` group: builders of the networks a sweep optimizes.

A builder implements :class:`ModelBuilder`: ``build(input_shape, num_classes) -> keras.Model``;
shapes come from the data, so a new dataset needs no model change and a user can
point ``_target_`` at a builder of their own (``build`` alone is its interface: the
functions at the end give the defaults of the rest to builders that do not subclass).
A builder may also bring trained weights and their loss (``model=keras_file``,
:mod:`sweep.groups.keras_file`): then it says so with ``trained``, checks the data's shape
in ``input_shape_for``, and names its loss in ``objective``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from sweep.backend import keras
from sweep.groups.objective import Objective
from sweep.settings import ConfigError, at_least, one_of, setting


class ModelBuilder(ABC):
    """Interface of the ``model`` group: a named builder of networks (untrained, unless
    ``trained``: then ``build`` returns the same trained weights every time)."""

    name: str
    trained: ClassVar[bool] = False

    @abstractmethod
    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        """A fresh model for inputs of ``input_shape`` (no batch axis) and ``num_classes``."""

    def input_shape_for(self, data_shape: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
        """The input shape the model takes for data of ``data_shape`` (the data is reshaped
        to it); raises a UserError, before any run opens, when the model cannot take it."""
        return data_shape

    def objective(self) -> Objective | None:
        """The loss the model is fitted with (None: the tool's own, from logits)."""
        return None

    def provenance(self) -> dict[str, str]:
        """What the model comes from besides the settings (e.g. a file's checksum): part of
        the cache keys, and tags of the run."""
        return {}


@dataclass
class ConvNet(ModelBuilder):
    """Reshape → [Conv k×k ReLU → MaxPool] × blocks → Flatten → [Dense ReLU] → Dense (logits).

    The defaults are the reference CNN (one block of 12 3×3 filters, 2×2 pooling, no
    hidden dense layer). ``separable=True`` swaps Conv2D for SeparableConv2D: the study's
    "operations optimization" (fewer multiply-accumulates for the same shape). The knobs
    that shrink the ``.tflite`` are the ones that shrink the Flatten → Dense matrix:
    wider pooling, a second block (its convolution keeps the size, ``same`` padding, and
    its pooling divides it again), fewer filters; ``dense_units`` adds a hidden layer.
    """

    name: str = "cnn"
    filters: int = setting(12, at_least(1))
    kernel_size: int = setting(3, at_least(1))
    pool_size: int = setting(2, at_least(1))
    separable: bool = False
    blocks: int = setting(1, one_of(1, 2, 3))
    dense_units: int = setting(0, at_least(0))  # 0 = no hidden dense layer

    def _check_shape(self, height: int, width: int) -> None:
        """Fail with the knobs to change, not with a Keras shape error deep in a layer."""
        h, w = height - self.kernel_size + 1, width - self.kernel_size + 1
        for block in range(self.blocks):
            h, w = h // self.pool_size, w // self.pool_size
            if min(h, w) < 1:
                raise ConfigError(
                    f"model: {height}×{width} inputs shrink to nothing after block {block + 1} "
                    f"(kernel_size={self.kernel_size}, pool_size={self.pool_size}, "
                    f"blocks={self.blocks}): use fewer blocks or a smaller pool_size."
                )

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        height, width = input_shape[0], input_shape[1]
        channels = input_shape[2] if len(input_shape) > 2 else 1
        self._check_shape(height, width)
        conv = keras.layers.SeparableConv2D if self.separable else keras.layers.Conv2D
        layers = [
            keras.layers.InputLayer(input_shape=tuple(input_shape)),
            keras.layers.Reshape((height, width, channels)),
            conv(self.filters, self.kernel_size, activation="relu"),
            keras.layers.MaxPooling2D(self.pool_size),
        ]
        for _ in range(self.blocks - 1):
            layers += [
                conv(self.filters, self.kernel_size, activation="relu", padding="same"),
                keras.layers.MaxPooling2D(self.pool_size),
            ]
        layers.append(keras.layers.Flatten())
        if self.dense_units:
            layers.append(keras.layers.Dense(self.dense_units, activation="relu"))
        layers.append(keras.layers.Dense(num_classes))
        return keras.Sequential(layers, name=self.name)


def is_trained(builder: Any) -> bool:
    """Whether ``build`` returns trained weights (a user's plain builder: no)."""
    return bool(getattr(builder, "trained", False))


def input_shape_for(builder: Any, data_shape: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
    check = getattr(builder, "input_shape_for", None)
    return tuple(check(data_shape, num_classes)) if check else data_shape


def objective_of(builder: Any) -> Objective | None:
    find = getattr(builder, "objective", None)
    return find() if find else None


def provenance_of(builder: Any) -> dict[str, str]:
    find = getattr(builder, "provenance", None)
    return dict(find()) if find else {}
