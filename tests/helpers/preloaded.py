"""``python -m sweep`` without paying its imports in every test: forked from a process
that has already imported them.

A sweep process spends ~6 CPU s importing TensorFlow, tf_keras, MLflow, Hydra and the
pipeline before its first job, and the suite starts dozens of them. Here one server
process per test process imports them once (and runs nothing else: no TensorFlow op, so
its runtime and thread pools are never started) and forks one child per command. The
child is then what ``python -m sweep`` would be after its imports: its own session, the
command's working folder, environment, arguments and standard streams, the module run as
``__main__``, and a normal interpreter exit (atexit handlers, flushed streams, the exit
status of ``sys.exit`` or 1 with a traceback).

What a fork cannot give, it does not fake: a command whose environment differs from the
server's in a variable read while Python or TensorFlow starts (``PYTHONPATH``,
``TF_*``, ...; only those in :data:`READ_WHEN_USED` may differ) runs as a plain
subprocess instead, and so does everything when ``SWEEP_TESTS_FORK=0``. Tests that look
at a process's imports, signals or its start (Ctrl-C, a kill, "no TensorFlow loaded")
start plain subprocesses themselves.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORK_ENV = "SWEEP_TESTS_FORK"
"""Set to 0 to run every test's sweep as a plain ``python -m sweep`` subprocess."""

PRELOADED = ("sweep.backend", "sweep.pipeline.job", "mlflow", "hydra", "optuna")
READ_WHEN_USED = (
    "SWEEP_", "MLFLOW_", "HYDRA_FULL_ERROR", "PATH", "HOME", "RAY_ADDRESS", "PYTEST_",
)
"""Environment variables (or prefixes) the product reads when it uses them, never while
it starts: a forked child may set them to anything."""


def _may_differ(key: str) -> bool:
    return any(
        key == name or (name.endswith("_") and key.startswith(name)) for name in READ_WHEN_USED
    )


class _Server:
    """The client's end: one server process, one command at a time."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.busy = threading.Lock()
        atexit.register(self.process.kill)

    def serves(self, env: dict[str, str]) -> bool:
        keys = set(env) | set(self.env)
        return self.process.poll() is None and all(
            env.get(key) == self.env.get(key) or _may_differ(key) for key in keys
        )

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, timeout: float):
        with tempfile.TemporaryDirectory(prefix="preloaded-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {
                "argv": argv,
                "env": env,
                "cwd": str(cwd),
                "stdout": str(out),
                "stderr": str(err),
            }
            assert self.process.stdin and self.process.stdout
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            pid = int(self.process.stdout.readline())
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            if not ready:
                os.killpg(pid, signal.SIGKILL)
                self.process.stdout.readline()
                raise subprocess.TimeoutExpired(argv, timeout, out.read_text(), err.read_text())
            code = int(self.process.stdout.readline())
            return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())


@functools.cache
def _server() -> _Server:
    return _Server()


def run_module(
    module: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess:
    """``python -m module *args`` in ``cwd`` with ``env``, output captured as text: forked
    from the preloaded server when it can be, else a plain subprocess."""
    argv = [sys.executable, "-m", module, *args]
    if os.environ.get(FORK_ENV, "1") != "0":
        server = _server()
        if server.serves(env) and server.busy.acquire(blocking=False):
            try:
                return server.run(argv, env, cwd, timeout)
            finally:
                server.busy.release()
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# The server's end ------------------------------------------------------------------------


def _child(request: dict) -> None:
    """In the forked child: become ``python -m <module> <args>`` and run it to its exit."""
    import runpy

    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    with (
        open(os.devnull) as stdin,
        open(request["stdout"], "w") as out,
        open(request["stderr"], "w") as err,
    ):
        os.dup2(stdin.fileno(), 0)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
    sys.path[0] = request["cwd"]  # as ``-m`` puts the working folder first
    _, _, module, *args = request["argv"]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.exit(0)


def _serve() -> None:
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    import sweep.backend

    sweep.backend.loaded("keras")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)  # never returns: its SystemExit ends the child's interpreter
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    _serve()
