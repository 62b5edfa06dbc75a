"""The `train` group: how a model's weights are fitted.

Two loops over the same model, optimizer and loss: Keras ``fit`` and a custom
loop compiled with ``tf.function`` whose Grappler passes are set from the config
(the study's "graph optimization"). Pre-training fine-tunes through the same
trainer, so a graph-optimized sequence stays graph-optimized end to end.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sweep.backend import keras, tf
from sweep.groups.objective import DEFAULT, Objective
from sweep.settings import above, at_least, setting

log = logging.getLogger(__name__)


@dataclass
class Trainer(ABC):
    """Interface of the ``train`` group: settings shared by both loops; each supplies ``_loop``.

    ``trains`` is False for an option that keeps the model's weights as they are
    (``train=none``): the job then has no train phase, and the trainer only serves
    pre-training's fine-tuning. ``objective`` is what it fits: the tool's own loss unless
    :meth:`aimed_at` gives it a model's own.
    """

    trains: ClassVar[bool] = True

    name: str = "fit"
    epochs: int = setting(10, at_least(1))
    batch_size: int = setting(64, at_least(1))
    learning_rate: float = setting(1e-3, above(0))
    objective: Objective = field(default=DEFAULT, init=False, repr=False, compare=False)

    def aimed_at(self, objective: Objective | None) -> Trainer:
        """This trainer fitting ``objective`` (e.g. the loss a model file was compiled with)."""
        trainer = copy.copy(self)
        trainer.objective = objective or DEFAULT
        return trainer

    def compile(self, model: keras.Model) -> keras.optimizers.Optimizer:
        optimizer = keras.optimizers.Adam(self.learning_rate)
        model.compile(
            optimizer=optimizer,
            loss=self.objective.loss(),
            metrics=self.objective.metrics(),
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
        from sweep.groups.epoch_logger import EpochLogger, interrupts_kept  # imports Keras

        all_callbacks = [EpochLogger(label, epochs), *callbacks]
        targets = self.objective.targets(y, int(model.output_shape[-1]))
        with interrupts_kept():
            return self._loop(model, x, targets, epochs, all_callbacks)

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
        accuracy = self.objective.accuracy()
        mean_loss = keras.metrics.Mean()

        @tf.function(jit_compile=self.jit_compile, reduce_retracing=True)
        def train_step(xb: tf.Tensor, yb: tf.Tensor) -> None:
            with tf.GradientTape() as tape:
                logits = model(xb, training=True)
                # A loss function (not a Loss object) returns one value per example.
                loss = tf.reduce_mean(loss_fn(yb, logits)) + tf.add_n([0.0, *model.losses])
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


@dataclass
class NoTraining(FitTrainer):
    """Keep the model's weights as they are: a model trained elsewhere (``model=keras_file``).

    The job has no train phase (its "trained" stage is the file's weights). Pre-training
    (pruning, QAT) still fine-tunes them, through Keras ``fit`` with this option's
    ``batch_size`` and ``learning_rate`` (Adam) and the model's own loss.
    """

    trains: ClassVar[bool] = False

    name: str = "none"
