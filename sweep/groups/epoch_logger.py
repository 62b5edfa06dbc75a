"""Progress of a training: one log line per epoch, without Keras' progress-bar noise.

A module of its own because it subclasses a Keras class, which imports TensorFlow: the
trainer imports it when it trains, not when a sweep's settings are checked.
"""

from __future__ import annotations

import logging
import time

from sweep.backend import keras

log = logging.getLogger("sweep.groups.train")


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
