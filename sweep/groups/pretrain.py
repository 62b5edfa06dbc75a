"""The `pretrain` group: optimizations applied to a trained model before conversion.

Each option takes the trained model of the same dataset/model/train config and
returns the model to convert, fine-tuned through the same trainer. Options:
none, magnitude pruning (polynomial sparsity schedule) and quantization-aware
training.
"""

from __future__ import annotations

import contextlib
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from sweep.backend import keras, tfmot
from sweep.groups.train import Trainer
from sweep.settings import at_least, fraction, not_below, setting

log = logging.getLogger(__name__)


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

    def annotate(self, model: keras.Model) -> keras.Model:
        """The trained architecture as this option wraps it (the stage cache rebuilds a
        stored model from it, so it must be a function of the architecture alone)."""
        return model


@dataclass
class NoPretrain(PretrainOptimizer):
    """Convert the trained model as it is."""

    name: str = "none"

    def apply(
        self, model: keras.Model, x: np.ndarray, y: np.ndarray, trainer: Trainer
    ) -> keras.Model:
        return model


def _prunable(layer: keras.layers.Layer) -> bool:
    """Whether tfmot can prune the layer's weights (Conv, Dense, ...).

    Layers it cannot prune and that have nothing to prune are left as they are, not
    wrapped: tfmot refuses a whole model holding one of them, and a model trained
    elsewhere often does (a ``Rescaling`` layer, a preprocessing layer of the user's own).
    """
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer):
        return True
    return PruneRegistry.supports(layer) and bool(layer.weights)


@dataclass
class Pruning(PretrainOptimizer):
    """Magnitude pruning, sparsity rising polynomially over the fine-tuning steps.

    Zeros are still stored in a TFLite file, so pruning shows in the gzip size
    and the sparsity metric, not in the raw ``.tflite`` bytes. Every layer tfmot can
    prune is pruned; others (e.g. ``Rescaling``) are kept as they are.
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
        pruned = keras.models.clone_model(
            model,
            clone_function=lambda layer: (
                tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
                if _prunable(layer)
                else layer
            ),
        )
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
        with self.load_scope():  # knows the configs of the layers annotated to stay float
            aware = tfmot.quantization.keras.quantize_model(self.annotate(model))
        trainer.fit(aware, x, y, epochs=self.fine_tune_epochs, label="qat")
        return aware

    def annotate(self, model: keras.Model) -> keras.Model:
        """The model as tfmot quantizes it whole; or, when its 8-bit scheme refuses a layer
        (``Rescaling``, BatchNormalization after an activation: common in models trained
        elsewhere), with those layers computing in float and only their outputs
        quantization-aware, the rest as tfmot quantizes it."""
        try:
            tfmot.quantization.keras.quantize_model(model)
            return model
        except (RuntimeError, ValueError):
            pass
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_configs as configs,
        )
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_registry as registry,
        )

        supported = registry.Default8BitQuantizeRegistry().supports
        kept: list[str] = []

        def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
            if isinstance(layer, keras.layers.InputLayer) or supported(layer):
                return layer
            kept.append(layer.name)
            # Float inside, its output fake-quantized: the next layer gets the range it
            # learned (with no quantizer there, the converter mistakes the range).
            return tfmot.quantization.keras.quantize_annotate_layer(
                layer, quantize_config=configs.Default8BitOutputQuantizeConfig()
            )

        annotated = keras.models.clone_model(model, clone_function=annotate)
        log.info("qat: %s quantized at the output only (not in tfmot's scheme)", ", ".join(kept))
        return annotated

    def load_scope(self) -> contextlib.AbstractContextManager:
        return tfmot.quantization.keras.quantize_scope()
