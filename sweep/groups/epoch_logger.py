"""Progress of a training, and a Ctrl-C during it that is never lost.

One log line per epoch, without Keras' progress-bar noise. A Ctrl-C raises
KeyboardInterrupt wherever the main thread happens to be; when that is inside a
finalizer (``__del__``: TensorFlow deletes each epoch's dataset iterator as the next
epoch starts), Python prints "Exception ignored" and training goes on, for hours if the
schedule is long. :func:`interrupts_kept` remembers the signal, and the callback raises it
again at the next epoch's boundary.

A module of its own because it subclasses a Keras class, which imports TensorFlow: the
trainer imports it when it trains, not when a sweep's settings are checked.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator

from sweep.backend import keras

log = logging.getLogger("sweep.groups.train")

_interrupted = threading.Event()


def _remember_and_interrupt(signum: int, frame: object) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_kept() -> Iterator[None]:
    """For the block, a Ctrl-C is remembered as well as raised (see the module's docstring).
    Only where Python's own handler is in place, in the main thread: a handler someone else
    installed (Ray's, a debugger's) is left alone."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _interrupted.clear()
    signal.signal(signal.SIGINT, _remember_and_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _interrupted.clear()


def _raise_if_interrupted() -> None:
    if _interrupted.is_set():
        raise KeyboardInterrupt("Ctrl-C during training")


class EpochLogger(keras.callbacks.Callback):
    """One log line per epoch; a remembered Ctrl-C is raised at the epoch's boundaries."""

    def __init__(self, label: str, epochs: int) -> None:
        super().__init__()
        self.label, self.epochs = label, epochs
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        _raise_if_interrupted()
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
        _raise_if_interrupted()
