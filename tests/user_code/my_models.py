"""A model a user brings with one builder: the interface is ``build(input_shape, num_classes)``.

``BackboneMLP`` nests a backbone model inside the model, as transfer-learning code does:
tfmot cannot quantize a model inside a model, so its QAT fails for real, and the
end-to-end tests use it as a sequence that fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweep.backend import keras


@dataclass
class BackboneMLP:
    name: str = "backbone_mlp"
    units: int = 16

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        flat = int(np.prod(input_shape))
        backbone = keras.Sequential(
            [keras.layers.InputLayer(input_shape=(flat,)),
             keras.layers.Dense(self.units, activation="relu")],
            name="backbone",
        )  # fmt: skip
        return keras.Sequential(
            [
                keras.layers.InputLayer(input_shape=tuple(input_shape)),
                keras.layers.Flatten(),
                backbone,
                keras.layers.Dense(num_classes),
            ],
            name=self.name,
        )
