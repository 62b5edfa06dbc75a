"""The `train` group: how a model's weights are fitted.

Two loops over the same model, optimizer and loss: Keras ``fit`` and a custom
loop compiled with ``tf.function`` whose Grappler passes are set from the config
(the study's "graph optimization"). Pre-training fine-tunes through the same
trainer, so a graph-optimized sequence stays graph-optimized end to end.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweep.backend import keras, tf
from sweep.settings import above, at_least, setting

log = logging.getLogger(__name__)


class EpochLogger(keras.callbacks.Callback):
    """One log line per epoch: progress without Keras' progress-bar noise."""

    def __init__(self, label: str, epochs: int) -> None:
        super().__init__()
        self.label, self.epochs = label, epochs
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        log.info(
            "%s epoch %d/%d  loss %.4f  accuracy %.4f  (%.1f s)",
            self.label,
            epoch + 1,
            self.epochs,
            logs.get("loss", float("nan")),
            logs.get("accuracy", float("nan")),
            time.perf_counter() - self._started,
        )


@dataclass
class Trainer(ABC):
    """Interface of the ``train`` group: settings shared by both loops; each supplies ``_loop``."""

    name: str = "fit"
    epochs: int = setting(10, at_least(1))
    batch_size: int = setting(64, at_least(1))
    learning_rate: float = setting(1e-3, above(0))

    def compile(self, model: keras.Model) -> keras.optimizers.Optimizer:
        optimizer = keras.optimizers.Adam(self.learning_rate)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return optimizer

    def fit(
        self,
        model: keras.Model,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        label: str = "train",
    ) -> list[dict[str, float]]:
        """Train in place and return one dict of logs per epoch.

        The model is left compiled with its optimizer, so a saved file carries
        the optimizer state as the original Keras file of the study did.
        """
        epochs = epochs or self.epochs
        all_callbacks = [EpochLogger(label, epochs), *callbacks]
        return self._loop(model, x, y, epochs, all_callbacks)

    @abstractmethod
    def _loop(self, model, x, y, epochs, callbacks) -> list[dict[str, float]]:
        """Fit ``model`` for ``epochs``; the per-epoch logs."""


@dataclass
class FitTrainer(Trainer):
    """Keras ``Model.fit``: the reference training of the study."""

    def _loop(self, model, x, y, epochs, callbacks) -> list[dict[str, float]]:
        self.compile(model)
        history = model.fit(
            x,
            y,
            batch_size=self.batch_size,
            epochs=epochs,
            verbose=0,
            shuffle=True,
            callbacks=callbacks,
        )
        keys = list(history.history)
        return [{k: float(history.history[k][i]) for k in keys} for i in range(epochs)]


@dataclass
class GraphTrainer(Trainer):
    """A custom loop in one ``tf.function`` with explicit Grappler options."""

    name: str = "graph"
    jit_compile: bool = False
    grappler: dict[str, Any] = field(default_factory=dict)

    def _loop(self, model, x, y, epochs, callbacks) -> list[dict[str, float]]:
        previous = tf.config.optimizer.get_experimental_options()
        tf.config.optimizer.set_experimental_options(dict(self.grappler))
        try:
            return self._graph_loop(model, x, y, epochs, callbacks)
        finally:  # Grappler options are process-wide: don't leak them into the next job
            tf.config.optimizer.set_experimental_options(previous)

    def _graph_loop(self, model, x, y, epochs, callbacks) -> list[dict[str, float]]:
        optimizer = self.compile(model)
        loss_fn = model.loss
        accuracy = keras.metrics.SparseCategoricalAccuracy()
        mean_loss = keras.metrics.Mean()

        @tf.function(jit_compile=self.jit_compile, reduce_retracing=True)
        def train_step(xb: tf.Tensor, yb: tf.Tensor) -> None:
            with tf.GradientTape() as tape:
                logits = model(xb, training=True)
                loss = loss_fn(yb, logits) + tf.add_n([0.0, *model.losses])
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            mean_loss.update_state(loss)
            accuracy.update_state(yb, logits)

        data = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), reshuffle_each_iteration=True)
            .batch(self.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        hooks = keras.callbacks.CallbackList(list(callbacks), model=model)
        history: list[dict[str, float]] = []
        hooks.on_train_begin()
        for epoch in range(epochs):
            mean_loss.reset_state()
            accuracy.reset_state()
            hooks.on_epoch_begin(epoch)
            for batch, (xb, yb) in enumerate(data):
                hooks.on_train_batch_begin(batch)
                train_step(xb, yb)
                hooks.on_train_batch_end(batch)
            logs = {"loss": float(mean_loss.result()), "accuracy": float(accuracy.result())}
            hooks.on_epoch_end(epoch, logs)
            history.append(logs)
        hooks.on_train_end()
        return history
