"""The `model` group: builders of the networks a sweep optimizes.

A builder is any object with ``build(input_shape, num_classes) -> keras.Model``;
shapes come from the data, so a new dataset needs no model change and a user can
point ``_target_`` at a builder of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.backend import keras
from sweep.validation import require


@dataclass
class ConvNet:
    """Reshape → Conv 3×3 ReLU → MaxPool → Flatten → Dense (logits).

    ``separable=True`` swaps Conv2D for SeparableConv2D: the study's
    "operations optimization" (fewer multiply-accumulates for the same shape).
    """

    name: str = "cnn"
    filters: int = 12
    kernel_size: int = 3
    pool_size: int = 2
    separable: bool = False

    def __post_init__(self) -> None:
        require(self.filters >= 1, "model.filters", self.filters, "an integer >= 1")
        require(self.kernel_size >= 1, "model.kernel_size", self.kernel_size, "an integer >= 1")
        require(self.pool_size >= 1, "model.pool_size", self.pool_size, "an integer >= 1")

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
