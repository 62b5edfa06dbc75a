"""The `model` group: builders of the networks a sweep optimizes.

A builder implements :class:`ModelBuilder`: ``build(input_shape, num_classes) -> keras.Model``;
shapes come from the data, so a new dataset needs no model change and a user can
point ``_target_`` at a builder of their own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from sweep.backend import keras
from sweep.settings import at_least, setting


class ModelBuilder(ABC):
    """Interface of the ``model`` group: a named builder of untrained networks."""

    name: str

    @abstractmethod
    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        """A fresh model for inputs of ``input_shape`` (no batch axis) and ``num_classes``."""


@dataclass
class ConvNet(ModelBuilder):
    """Reshape → Conv 3×3 ReLU → MaxPool → Flatten → Dense (logits).

    ``separable=True`` swaps Conv2D for SeparableConv2D: the study's
    "operations optimization" (fewer multiply-accumulates for the same shape).
    """

    name: str = "cnn"
    filters: int = setting(12, at_least(1))
    kernel_size: int = setting(3, at_least(1))
    pool_size: int = setting(2, at_least(1))
    separable: bool = False

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        height, width = input_shape[0], input_shape[1]
        channels = input_shape[2] if len(input_shape) > 2 else 1
        conv = keras.layers.SeparableConv2D if self.separable else keras.layers.Conv2D
        return keras.Sequential(
            [
                keras.layers.InputLayer(input_shape=tuple(input_shape)),
                keras.layers.Reshape((height, width, channels)),
                conv(self.filters, self.kernel_size, activation="relu"),
                keras.layers.MaxPooling2D(self.pool_size),
                keras.layers.Flatten(),
                keras.layers.Dense(num_classes),
            ],
            name=self.name,
        )
