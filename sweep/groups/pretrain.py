"""The `pretrain` group: optimizations applied to a trained model before conversion.

Each option takes the trained model of the same dataset/model/train config and
returns the model to convert, fine-tuned through the same trainer. Options:
none, magnitude pruning (polynomial sparsity schedule) and quantization-aware
training.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from sweep.backend import keras, tfmot
from sweep.groups.train import Trainer
from sweep.settings import at_least, fraction, not_below, setting


class PretrainOptimizer(ABC):
    """Interface of the ``pretrain`` group: trained model in, model to convert out."""

    name: str

    @abstractmethod
    def apply(
        self, model: keras.Model, x: np.ndarray, y: np.ndarray, trainer: Trainer
    ) -> keras.Model:
        """The optimized model, fine-tuned on (x, y) through ``trainer``."""

    def load_scope(self) -> contextlib.AbstractContextManager:
        """Custom objects needed to load a model this stage saved."""
        return contextlib.nullcontext()


@dataclass
class NoPretrain(PretrainOptimizer):
    """Convert the trained model as it is."""

    name: str = "none"

    def apply(
        self, model: keras.Model, x: np.ndarray, y: np.ndarray, trainer: Trainer
    ) -> keras.Model:
        return model


@dataclass
class Pruning(PretrainOptimizer):
    """Magnitude pruning, sparsity rising polynomially over the fine-tuning steps.

    Zeros are still stored in a TFLite file, so pruning shows in the gzip size
    and the sparsity metric, not in the raw ``.tflite`` bytes.
    """

    name: str = "pruning"
    initial_sparsity: float = setting(0.5, fraction())
    final_sparsity: float = setting(0.8, fraction(), not_below("initial_sparsity"))
    fine_tune_epochs: int = setting(2, at_least(1))
    frequency: int = setting(100, at_least(1))

    def apply(
        self, model: keras.Model, x: np.ndarray, y: np.ndarray, trainer: Trainer
    ) -> keras.Model:
        steps = self.fine_tune_epochs * math.ceil(len(x) / trainer.batch_size)
        # Masks update only on steps that are multiples of the frequency, counted
        # from 1: end on the last such step so the final sparsity is really reached.
        frequency = min(self.frequency, steps)
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=0,
            end_step=frequency * (steps // frequency),
            frequency=frequency,
        )
        pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        trainer.fit(
            pruned,
            x,
            y,
            epochs=self.fine_tune_epochs,
            label="prune",
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        )
        stripped = tfmot.sparsity.keras.strip_pruning(pruned)
        trainer.compile(stripped)
        return stripped


@dataclass
class QuantizationAware(PretrainOptimizer):
    """Quantization-aware fine-tuning: fake-quant nodes learn int8 ranges."""

    name: str = "qat"
    fine_tune_epochs: int = setting(1, at_least(1))

    def apply(
        self, model: keras.Model, x: np.ndarray, y: np.ndarray, trainer: Trainer
    ) -> keras.Model:
        aware = tfmot.quantization.keras.quantize_model(model)
        trainer.fit(aware, x, y, epochs=self.fine_tune_epochs, label="qat")
        return aware

    def load_scope(self) -> contextlib.AbstractContextManager:
        return tfmot.quantization.keras.quantize_scope()
