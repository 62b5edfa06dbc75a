"""Run a native runtime's call in a child process, so a model can cost one bounded
measurement and nothing more.

tflite-micro's host build dies with SIGSEGV on some models (a searched separable,
QAT, int8 model with 4 filters does it; ``tests/data/tflm_segfault.tflite``). In the
job's own process that ends the whole sweep. Here the call runs in a child forked
from a small fork server (started once per process: forking TensorFlow's own threads
is not safe), its result comes back through a pipe, and a child that dies is
reported as :class:`RuntimeCrashed` naming the signal.

A model file from elsewhere can do worse than crash: a WHILE whose condition stays
true spins forever, a huge tensor asks for all the memory there is. So a child gets
limits (:class:`Limits`):

- **time**, derived from the work: the parent waits ``start_seconds`` for the child
  to start and say what it needs; the child's own code (not the model) then calls
  :func:`allow` with the time its next step may take, e.g. the runtime's first
  invoke, then (:func:`work_seconds`) the invokes it plans, timed by that first one,
  several times over. Never more than ``max_seconds`` in all. Past its deadline the
  child is killed: :class:`RuntimeTimedOut`.
- **memory**: the child's address space may grow by ``memory_bytes`` (RLIMIT_AS);
  allocations beyond fail: :class:`RuntimeOutOfMemory`.
- **CPU**: RLIMIT_CPU of ``max_seconds``, a backstop for a parent unable to kill it.
- **the parent's life**: the child, and the fork server it comes from, die with
  their parent (:mod:`sweep.runtimes.lifeline`); a parent interrupted or failing
  while it waits kills the child before it goes on.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from sweep.errors import UserError
from sweep.runtimes.lifeline import die_with_parent

Result = TypeVar("Result")

PRELOAD = "sweep.runtimes.forkserver_preload"
"""Imported by the fork server when it starts: it dies with the process that started it."""
SAFETY = 5.0
"""How many times the measured cost of the planned work a child may take: a shared
machine's neighbours slow single measurements by up to ~40 %, a busy one by far more."""
SLACK_SECONDS = 10.0
"""Added to every planned budget: start-up, imports, Python's own overhead."""
STEP_FLOOR_SECONDS = 1e-3
"""The least a planned step is budgeted: Python's own work around a tiny model's invoke."""
FIRST_STEP_SECONDS = 20.0
"""What a runtime may take to load a model and run it once, before it plans the rest
(MLPerf Tiny's ic takes ~0.06 s in tflite-micro on this host, kws ~0.03 s), unless
:data:`FIRST_STEP_ENV` says otherwise."""
FIRST_STEP_ENV = "SWEEP_FIRST_INVOKE_SECONDS"
_EXIT_SECONDS = 5.0  # a child that answered but does not exit is killed after this
_MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """What a child may spend (see the module docstring)."""

    start_seconds: float = 60.0  # until the child's first allow(): fork, imports, arguments
    max_seconds: float = 1800.0  # the most any allow() can reach, from the start
    memory_bytes: int = 2 * 2**30  # address space beyond what the child starts with


class RuntimeCrashed(RuntimeError):
    """The child running a native call ended without an answer (e.g. SIGSEGV)."""


class RuntimeTimedOut(RuntimeCrashed):
    """The child did not answer within its budget and was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not finish within {seconds:.0f} s")
        self.seconds = seconds


class RuntimeOutOfMemory(RuntimeCrashed):
    """The child asked for more memory than its limit."""


_channel: list[Connection | None] = [None]
"""In a child: the pipe to the parent (None elsewhere)."""


def allow(seconds: float) -> None:
    """In a child: the call may take ``seconds`` more from now on (capped by its limits).

    Outside a child (the same code called directly) it does nothing.
    """
    if _channel[0] is not None:
        _channel[0].send(("allow", float(seconds)))


def first_step_seconds() -> float:
    """The budget of a model's load and first invoke: :data:`FIRST_STEP_SECONDS`, or the
    seconds in ``SWEEP_FIRST_INVOKE_SECONDS``, for someone profiling many files from
    elsewhere who would rather give up on a hostile one sooner (or a slow board's user
    who needs longer). Raises UserError naming the variable when it holds no such number."""
    configured = os.environ.get(FIRST_STEP_ENV)
    if configured is None:
        return FIRST_STEP_SECONDS
    try:
        seconds = float(configured)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= Limits.max_seconds:  # NaN and inf fail too
        raise UserError(
            f"{FIRST_STEP_ENV}={configured!r} is not valid: expected seconds above 0 and at "
            f"most {Limits.max_seconds:g}, or unset for {FIRST_STEP_SECONDS:g}"
        )
    return seconds


def work_seconds(steps: int, seconds_each: float) -> float:
    """The budget of ``steps`` steps of which one took ``seconds_each``."""
    return SLACK_SECONDS + SAFETY * max(0, steps) * max(STEP_FLOOR_SECONDS, seconds_each)


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_resources(limits: Limits) -> None:
    """RLIMIT_AS and RLIMIT_CPU for this child; a lower limit already set is kept."""
    for kind, soft in (
        (resource.RLIMIT_AS, _address_space_bytes() + limits.memory_bytes),
        (resource.RLIMIT_CPU, int(limits.max_seconds) + 1),
    ):
        current_soft, hard = resource.getrlimit(kind)
        if current_soft != resource.RLIM_INFINITY:
            soft = min(soft, current_soft)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))


def _child(
    send: Connection, limits: Limits, function: Callable[..., Any], args: tuple, kwargs: dict
) -> None:
    die_with_parent()
    _limit_resources(limits)
    _channel[0] = send
    try:
        outcome = ("done", True, function(*args, **kwargs))
    except MemoryError:
        mib = limits.memory_bytes // _MIB
        outcome = ("done", False, RuntimeOutOfMemory(f"needed more than {mib} MiB of memory"))
    except BaseException as error:  # handed back and raised in the caller
        outcome = ("done", False, error)
    _channel[0] = None
    send.send(outcome)
    send.close()


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode} without an answer"


def _answer(receive: Connection, child: Any, limits: Limits) -> tuple[bool, Any]:
    """Wait for the child's answer within the time it was allowed; (ok, value)."""
    started = time.monotonic()
    allowed, deadline = limits.start_seconds, started + limits.start_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not receive.poll(remaining):
            raise RuntimeTimedOut(allowed)
        try:
            kind, *payload = receive.recv()
        except EOFError:  # the child holds the only writer: it died
            child.join()
            raise RuntimeCrashed(_how_it_ended(child.exitcode)) from None
        if kind == "done":
            return payload[0], payload[1]
        now = time.monotonic()
        allowed = max(0.0, min(float(payload[0]), started + limits.max_seconds - now))
        deadline = now + allowed


def stopped_reason(stopped: RuntimeCrashed, runtime: str) -> str:
    """A model's verdict when its child was stopped, naming the runtime: "tflite-micro did
    not finish within 20 s on this model"."""
    if isinstance(stopped, RuntimeTimedOut):
        return f"{runtime} did not finish within {stopped.seconds:.0f} s on this model"
    if isinstance(stopped, RuntimeOutOfMemory):
        return f"{runtime} {stopped} on this model"
    return f"{runtime} crashed on this model ({stopped})"


def _preload() -> list[str]:
    """What the fork server imports first: ``__main__``, :data:`PRELOAD`, and the module
    that registers this process's start method if a library set its own. joblib's loky
    workers (``hydra/launcher=joblib``) run under "loky", and a child sets its parent's
    start method before anything else: unknown in the server, the child would die there."""
    modules = ["__main__", PRELOAD]
    method = multiprocessing.get_start_method(allow_none=True)
    if method not in (None, *multiprocessing.get_all_start_methods()):
        modules.append(type(multiprocessing.get_context(method)).__module__)
    return modules


def call_isolated(
    function: Callable[..., Result], *args: Any, limits: Limits | None = None, **kwargs: Any
) -> Result:
    """``function(*args, **kwargs)`` in a child process with ``limits``; its exceptions are
    raised here, its death, overrun or appetite as :class:`RuntimeCrashed` (or subclass).

    ``function`` must be importable by name (a module-level function), and its
    arguments and result picklable.
    """
    limits = limits or Limits()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_preload())  # applies when the server starts
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, limits, function, args, kwargs), daemon=True)
    child.start()
    send.close()  # the child holds the only writer: EOF when it dies
    try:
        ok, value = _answer(receive, child, limits)
        child.join(_EXIT_SECONDS)
    finally:  # an overrun, Ctrl-C or any error here: the child must not run on
        receive.close()
        if child.is_alive():
            child.kill()
        child.join()
    if not ok:
        raise value
    return value
