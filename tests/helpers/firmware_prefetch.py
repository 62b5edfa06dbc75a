"""A full test run builds the Cortex-M libraries it will need from its first second.

On a machine whose firmware cache is empty, the suite builds TFLM + CMSIS-NN (and its
runner) once for each of four CPUs: ~250 CPU s each, about half of a first run's work.
Built by the first test that needs each one, those builds start minutes into the run and
only when that test gets there, while the tests leave a core idle whenever they wait (a
server's start, a locked store, a subprocess). Started with the session instead, one
process builds them in the order the suite first needs them, and the cores never go idle
while a library is still to be built. A test that needs a library the prefetch is still
building waits on that entry's lock (``sweep.runtimes.cortex_m.cache_entry``), exactly as
it waits for another worker's build; the builds themselves are the product's
(:func:`~sweep.runtimes.cortex_m.library.build_library`,
:func:`~sweep.runtimes.cortex_m.runner.runner_for`), into the cache the tests use.

Only a full run prefetches (``pytest`` with no paths and no ``-k``), only where the
Cortex-M tests would run, and never with ``SWEEP_TESTS_PREFETCH=0``. With the cache
warm it finds every entry in about a second and exits. It is stopped (its whole process
group, so no compiler is left running) when the session ends.

Run as a script, it is the prefetch itself: ``python firmware_prefetch.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CPUS = ("cortex-m4f", "cortex-m33", "cortex-m7", "cortex-m0plus")
"""Every CPU the suite builds for, in the order its tests first need them."""

SWITCH = "SWEEP_TESTS_PREFETCH"
"""Set to 0 to leave every build to the test that needs it."""

_STOP_SECONDS = 30


def wanted(config: pytest.Config) -> bool:
    """True for a full run on a machine that can build the libraries."""
    from helpers.system import why_missing

    if os.environ.get(SWITCH, "") == "0" or hasattr(config, "workerinput"):
        return False  # switched off, or an xdist worker (the controller prefetches)
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS or config.option.keyword:
        return False  # some tests only: they may need no library at all
    return all(why_missing(need) is None for need in ("arm_toolchain", "make", "tflm_sources"))


class Prefetch:
    """The background build of one session; ``stop`` ends it and says how it ended."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends make and compilers too
            )

    def stop(self) -> str | None:
        """Ends the prefetch if it still runs; a line to show when it failed, else None."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            return None  # stopped: whatever the tests needed, they built themselves
        if self.process.returncode != 0:
            return (
                f"the firmware prefetch failed (exit {self.process.returncode}), see {self.log}; "
                "the tests built what they needed themselves"
            )
        return None


def _build_all() -> None:
    from sweep.runtimes.cortex_m.library import build_library
    from sweep.runtimes.cortex_m.runner import runner_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    # SIGTERM raises SystemExit, so a build in progress removes its temporary folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    for cpu in CPUS:
        runner = runner_for(build_library(cpu))
        logging.info("%s: library and runner ready (%s)", cpu, runner.library.root)


if __name__ == "__main__":
    _build_all()
