"""One place that imports TensorFlow, Keras 2 and the optimization toolkit, quietly and late.

``keras``, ``tf`` and ``tfmot`` are stand-ins that import the three on first use: the
modules that name them (every config group) load in a fraction of a second, so a command
with a bad setting fails in about a second instead of after TensorFlow's five-second
import, and checking a sweep's settings never pays for it.

TensorFlow's C++ start-up lines ("oneDNN custom operations are on", "Could not
find cuda drivers") ignore TF_CPP_MIN_LOG_LEVEL in 2.21, so stderr is silenced
at the file-descriptor level for the duration of the import only.
"""

from __future__ import annotations

import functools
import logging
import warnings
from types import ModuleType
from typing import Any

import sweep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from sweep.quiet import silenced_stderr

__all__ = ["keras", "limit_threads", "loaded", "tf", "tfmot"]


@functools.cache
def loaded(name: str) -> ModuleType:
    """``tf``, ``keras`` (tf_keras) or ``tfmot``, imported once, quietly. The optimization
    toolkit is imported only when named (pruning, QAT): it adds ~2.5 s to TensorFlow's
    import, which a job without a pre-training optimizer, a board sweep of one's own
    model or a search then never pays."""
    if name == "tfmot":
        loaded("tf")
        with silenced_stderr():
            import tensorflow_model_optimization
        return tensorflow_model_optimization
    with silenced_stderr():
        import tensorflow
        import tf_keras

    _no_thread_spinning()
    tensorflow.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    # The cache stores HDF5 on purpose: one file, optimizer included, as the study measured.
    warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
    return {"tf": tensorflow, "keras": tf_keras}[name]


def _no_thread_spinning() -> None:
    """TensorFlow's thread pools sleep when idle instead of spinning for work.

    A spinning pool keeps a core busy between ops. Alone on the machine that costs
    nothing; beside another TensorFlow process (parallel jobs, the tests' workers, Ray)
    it takes the core the other one needs. Measured on 2 cores (``benchmarks/
    thread_spinning.py``): two trainings side by side spend ~15 % less CPU and finish
    sooner, one alone is no slower, and the trained weights are identical (pools are
    scheduled differently, the arithmetic is not split differently). Set through the
    eager context's config (``experimental.disable_thread_spinning``), which the runtime
    reads when it starts: a process whose runtime already started keeps its pools."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    ctx = context.context()
    if ctx._context_handle is not None:  # the runtime started: too late
        logging.getLogger(__name__).debug("TensorFlow's thread pools already started")
        return
    config = config_pb2.ConfigProto()
    if ctx._config is not None:
        config.CopyFrom(ctx._config)
    config.experimental.disable_thread_spinning = True
    ctx._config = config  # no public setter; read at initialization


class _Deferred:
    """Stands for one of :func:`loaded`'s modules: the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(loaded(self._name), attribute)

    def __repr__(self) -> str:
        return f"<deferred {self._name}>"


keras: Any = _Deferred("keras")
tf: Any = _Deferred("tf")
tfmot: Any = _Deferred("tfmot")


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
