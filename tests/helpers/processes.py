"""Processes a test starts: followed line by line, so a test waits for what a process says
(an event), never for a length of time; and ended with everything they started.

Each process runs in a session of its own (its pid is the session id), so a signal can
reach it with its children, and whatever is left of the session (Ray's daemons, say) is
found through /proc and ended when the test ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers.config import ROOT, sweep_env
from helpers.preloaded import Forked, start_module

SAFETY_NET_SECONDS = 3600
"""How long a wait may last before a test gives up: never reached when the code works."""


def _default_ctrl_c_signals() -> None:
    """In the child before exec: SIGINT and SIGQUIT back to their defaults."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _forked(command: list[str], env: dict[str, str], cwd: Path, ctrl_c: bool) -> Forked | None:
    """``python -m <module> ...`` forked from the preloaded server (:mod:`.preloaded`)."""
    if command[:2] != [sys.executable, "-m"]:
        return None
    return start_module(command[2], command[3:], env, cwd, ctrl_c)


class Followed:
    """A process whose output (stdout and stderr, merged) a thread reads as it comes;
    forked from the preloaded server when it is ``python -m <module>``.

    ``log``: also write every line there (for a process that outlives the test's reads).
    ``as_from_a_terminal``: Ctrl-C's signals at their defaults in the process, as a shell
    starts a command in the foreground. A process inherits an ignored SIGINT and SIGQUIT
    (pytest under ``time``, or started with ``&`` by a script), and Python then never
    raises KeyboardInterrupt: a test that sends SIGINT needs this.
    """

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        cwd: Path = ROOT,
        log: Path | None = None,
        as_from_a_terminal: bool = False,
    ) -> None:
        self.process = _forked(command, env, cwd, as_from_a_terminal) or subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_default_ctrl_c_signals if as_from_a_terminal else None,
        )
        self.lines: list[str] = []
        self._log = log.open("w") if log else None
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._log:
                self._log.write(line)
                self._log.flush()
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()
        if self._log:
            self._log.close()

    def wait_for(
        self, marker: str, timeout: float = SAFETY_NET_SECONDS, after: str | None = None
    ) -> str:
        """The first line holding ``marker`` (printed after a line holding ``after``, if
        given), once the process has printed it; an AssertionError with the output's tail
        if the process ends without it."""

        def seen() -> str | None:
            lines = self.lines
            if after is not None:
                start = next((n for n, line in enumerate(lines) if after in line), len(lines))
                lines = lines[start + 1 :]
            return next((line for line in lines if marker in line), None)

        with self._changed:
            found = self._changed.wait_for(lambda: seen() or self._ended, timeout)
            line = seen()
            tail = "".join(self.lines[-30:])
        assert found and line is not None, f"{marker!r} never printed:\n{tail}"
        return line

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process and every process of its session's group."""
        os.killpg(self.process.pid, sig)

    def finish(self, timeout: float = SAFETY_NET_SECONDS) -> int:
        """Wait for the process to end and its output to be read; its exit status."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return code


def session_members(sid: int) -> list[int]:
    """Processes of session ``sid``: Ray's daemons stay in the session of the sweep."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":  # a zombie is gone already
            members.append(int(stat.parent.name))
    return members


def end_session(sid: int, grace: float = 10.0) -> None:
    """SIGTERM every process left in the session, then SIGKILL what is still there."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.2)


def script_result(script: str, tmp_path: Path, package_root: Path = ROOT) -> str:
    """The last line ``script`` prints, run by a fresh Python with the ``sweep`` package at
    ``package_root`` (a copy, say) and the tests' helpers importable; outputs in tmp_path."""
    env = {
        **sweep_env(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(package_root), str(ROOT / "tests")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=package_root, env=env,
        capture_output=True, text=True, timeout=SAFETY_NET_SECONDS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]
