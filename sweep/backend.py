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

__all__ = ["keras", "limit_threads", "tf", "tfmot"]


def limit_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools so parallel jobs don't oversubscribe the cores.

    TensorFlow fixes its pools when its runtime starts; in a process that already
    ran a job (Hydra's basic launcher) the first job's setting stays.
    """
    if threads <= 0:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logging.getLogger(__name__).debug("TensorFlow threads already fixed in this process")
