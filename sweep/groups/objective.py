"""What a model is fitted to: its loss, its metrics and the form of its labels.

The tool's own models end in logits and learn integer labels (sparse categorical
cross-entropy from logits, :data:`DEFAULT`). A model trained elsewhere brings its own
loss: a softmax head, one-hot labels, label smoothing. Fine-tuning it (pruning, QAT)
with another loss would optimize something other than what it was trained for, so the
trainer compiles with the model's objective (``Trainer.aimed_at``) and feeds the labels
in the form that loss expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.backend import keras


@dataclass(frozen=True)
class Objective:
    """A loss and metrics (made fresh for every compile) and whether labels are one-hot."""

    loss: Callable[[], Any]
    metrics: Callable[[], list[Any]]
    one_hot: bool = False
    description: str = "sparse categorical cross-entropy from logits"

    def targets(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """Integer labels in the form the loss takes."""
        if not self.one_hot:
            return y
        return np.eye(num_classes, dtype=np.float32)[y]

    def accuracy(self) -> keras.metrics.Metric:
        """The accuracy metric matching the labels (for loops that update metrics by hand)."""
        if self.one_hot:
            return keras.metrics.CategoricalAccuracy()
        return keras.metrics.SparseCategoricalAccuracy()


DEFAULT = Objective(
    loss=lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=lambda: ["accuracy"],
)
"""The tool's own models: logits, integer labels."""


def for_outputs(probabilities: bool) -> Objective:
    """Sparse categorical cross-entropy for a model saved without a loss: from its
    probabilities when it ends in softmax, else from logits."""
    if not probabilities:
        return DEFAULT
    return Objective(
        loss=lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=False),
        metrics=lambda: ["accuracy"],
        description="sparse categorical cross-entropy from the softmax output",
    )
