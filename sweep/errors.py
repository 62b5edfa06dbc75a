"""One convention for turning an error into what the user sees and an exit status.

Every entry point (``python -m sweep``, the multirun hooks, the search sweeper,
``sweep-rank``, ``sweep-profile``) ends the same way:

- a :class:`UserError` (a bad setting, a bad data or model file: the user's to fix)
  is one line naming the setting or file, and exit status 2, with nothing recorded
  that was not recorded before;
- Ctrl-C is "interrupted" and exit status 130;
- anything else is a bug or a broken machine: its traceback, and exit status 1.

:func:`exits_on_error` applies it; the entry points differ only in how a line is
shown (the log, or stderr) and what they must clean up first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UserError(Exception):
    """The user's to fix: shown as one line, exit status 2."""


def one_line(error: BaseException | str) -> str:
    """The error's text folded onto one line (Hydra's and MLflow's messages span several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def exit_status(error: BaseException) -> int:
    if isinstance(error, UserError):
        return EXIT_USAGE
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else EXIT_FAILED
    return EXIT_FAILED


@contextlib.contextmanager
def exits_on_error(
    say: Callable[[str], None],
    log: logging.Logger | None = None,
    before_exit: Callable[[BaseException], None] | None = None,
) -> Iterator[None]:
    """Run the block; end the process by the convention above if it raises.

    ``say`` shows a user error's one line (e.g. ``log.error`` or a print to stderr);
    ``log`` gets the traceback of anything unexpected (re-raised when ``log`` is None,
    so Python prints it); ``before_exit`` records what must be recorded first (the
    search marks its parent run failed).
    """
    try:
        yield
    except SystemExit:
        raise
    except BaseException as error:
        if before_exit is not None:
            before_exit(error)
        if isinstance(error, UserError):
            say(one_line(error))
        elif isinstance(error, KeyboardInterrupt):
            say("interrupted")
        elif log is not None:
            log.exception("failed: %s", one_line(error) or type(error).__name__)
        else:
            raise
        raise SystemExit(exit_status(error)) from None
