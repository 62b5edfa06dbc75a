"""One place that imports TensorFlow, Keras 2 and the optimization toolkit quietly.

TensorFlow's C++ start-up lines ("oneDNN custom operations are on", "Could not
find cuda drivers") ignore TF_CPP_MIN_LOG_LEVEL in 2.21, so stderr is silenced
at the file-descriptor level for the duration of the import only.
"""

from __future__ import annotations

import logging
import warnings

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from sweep.quiet import silenced_stderr

with silenced_stderr():
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

tf.get_logger().setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)
# The cache stores HDF5 on purpose: one file, optimizer included, as the study measured.
warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")

__all__ = ["keras", "tf", "tfmot"]
