"""A model a user brings with one builder: the interface is ``build(input_shape, num_classes)``.

It includes LayerNormalization, which quantization-aware training does not
support, so the end-to-end tests use it as a sequence that fails for real.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.backend import keras


@dataclass
class NormalizedMLP:
    name: str = "normalized_mlp"
    units: int = 32

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        return keras.Sequential(
            [
                keras.layers.InputLayer(input_shape=tuple(input_shape)),
                keras.layers.Flatten(),
                keras.layers.Dense(self.units, activation="relu"),
                keras.layers.LayerNormalization(),
                keras.layers.Dense(num_classes),
            ],
            name=self.name,
        )
