"""Memos a process keeps for one sweep, and forgets when the next sweep starts.

A worker process runs many jobs (the basic launcher runs a whole sweep in one
process; joblib and Ray reuse their workers across sweeps), so reading a dataset,
hashing source files or looking up a sweep's parent run once per process saves
seconds per job. What it remembers is only true for one sweep: code may be edited
between two sweeps of one process, a parent run belongs to one sweep. So every
memo registers here, and :func:`enter_sweep` clears them all when a job of another
sweep arrives (and the multirun hook clears them when a sweep starts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

Function = TypeVar("Function", bound=Callable[..., Any])

_CLEARS: list[Callable[[], None]] = []
_sweep: list[str | None] = [None]


def per_sweep(function: Function) -> Function:
    """``functools.cache`` for one sweep: cleared by :func:`reset`."""
    cached = functools.cache(function)
    _CLEARS.append(cached.cache_clear)
    return cached  # type: ignore[return-value]


def sweep_dict() -> dict[Any, Any]:
    """A dict memo for one sweep: emptied by :func:`reset`."""
    memo: dict[Any, Any] = {}
    _CLEARS.append(memo.clear)
    return memo


def reset() -> None:
    """Forget everything every memo holds."""
    for clear in _CLEARS:
        clear()


def enter_sweep(sweep_id: str | None) -> None:
    """Called by each job: a job of another sweep than the last one starts from empty memos."""
    if sweep_id != _sweep[0]:
        _sweep[0] = sweep_id
        reset()
