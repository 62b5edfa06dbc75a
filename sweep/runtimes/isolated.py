"""Run a native runtime's call in a child process, so its crash ends one measurement only.

tflite-micro's host build dies with SIGSEGV on some models (a searched separable,
QAT, int8 model with 4 filters does it; ``tests/data/tflm_segfault.tflite``). In the
job's own process that ends the whole sweep. Here the call runs in a child forked
from a small fork server (started once per process: forking TensorFlow's own threads
is not safe), its result comes back through a pipe, and a child that dies is
reported as :class:`RuntimeCrashed` naming the signal.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

Result = TypeVar("Result")


class RuntimeCrashed(RuntimeError):
    """The child running a native call ended without an answer (e.g. SIGSEGV)."""


def _child(send: Connection, function: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        outcome = (True, function(*args, **kwargs))
    except BaseException as error:  # handed back and raised in the caller
        outcome = (False, error)
    send.send(outcome)
    send.close()


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode} without an answer"


def call_isolated(function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """``function(*args, **kwargs)`` in a child process; its exceptions are raised here.

    ``function`` must be importable by name (a module-level function), and its
    arguments and result picklable.
    """
    context = multiprocessing.get_context("forkserver")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, function, args, kwargs), daemon=True)
    child.start()
    send.close()  # the child holds the only writer: EOF when it dies
    try:
        ok, value = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeCrashed(_how_it_ended(child.exitcode)) from None
    finally:
        receive.close()
    child.join()
    if not ok:
        raise value
    return value
