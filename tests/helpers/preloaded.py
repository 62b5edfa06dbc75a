"""``python -m sweep`` without paying its imports in every test: forked from a process
that has already imported them.

A sweep process spends ~6-8 CPU s importing TensorFlow, tf_keras, Keras 3 (the TFLite
converter imports it to ask whether a model is one), MLflow, Hydra and the pipeline
before and around its first job, and the suite starts dozens of them. Here one server
process per test process imports them once (and runs nothing else: no TensorFlow op, so
TensorFlow's runtime and thread pools never start in it) and forks one child per
command. The child is then what ``python -m <module>`` would be after those imports: a
session of its own (its pid is the group a test signals), the command's working folder,
environment, arguments and standard streams, the module run as ``__main__``, and Python's
exit (non-daemon threads waited for, atexit handlers, flushed streams, the status of
``sys.exit``, or 1 and a traceback) but for the teardown of the inherited modules (``_end``).

What a fork cannot give, it does not fake: a command whose environment differs from the
server's in a variable read while Python or TensorFlow starts (``TF_*``, ...: only those of
:data:`READ_WHEN_USED` may differ) runs as a plain subprocess, and so does every command
while another one is forked, or when ``SWEEP_TESTS_FORK=0``. ``PYTHONPATH`` may add
folders (a user's own checks or models): the child puts them where Python would, unless
one offers a module the server has already imported from elsewhere (:func:`_shadowing`).
Tests about what a fresh process imports start plain subprocesses themselves.
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

import sweep  # noqa: F401  (its start-up defaults, TF_USE_LEGACY_KERAS..., are in START_ENV)

ROOT = Path(__file__).resolve().parents[2]
START_ENV = dict(os.environ)
"""The test process's environment before any test changed it: the server's."""
FORK_ENV = "SWEEP_TESTS_FORK"
"""Set to 0 to run every test's ``python -m`` command as a plain subprocess."""

PRELOADED = (
    "keras",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "alembic",
    "matplotlib",
    "scipy.stats",
    "hydra",
    "optuna",
    "sweep.pipeline.job",
    "sweep.cli.sweep_callback",
)
"""Imported by the server after TensorFlow and tf_keras (``sweep.backend.loaded``)."""

READ_WHEN_USED = (
    "SWEEP_",
    "MLFLOW_",
    "_MLFLOW_",  # MLflow's own, set in a process using it (_MLFLOW_TELEMETRY_SESSION_ID)
    "HYDRA_FULL_ERROR",
    "PATH",
    "HOME",
    "RAY_",
    "PYTEST_",
)
"""Environment variables (or prefixes) read when used, never while Python or the
libraries start: a forked child may set them to anything."""


def _may_differ(key: str) -> bool:
    return any(
        key == name or (name.endswith("_") and key.startswith(name)) for name in READ_WHEN_USED
    )


def _entries(pythonpath: str | None, cwd: Path | str) -> list[str]:
    """The folders ``PYTHONPATH`` puts on ``sys.path`` of a process started in ``cwd``, as
    Python makes them: absolute, an empty entry meaning ``cwd``."""
    if not pythonpath:
        return []
    return [os.path.abspath(os.path.join(cwd, entry)) for entry in pythonpath.split(os.pathsep)]


def _shadowing(server_path: list[str], path: list[str], modules: list[str]) -> bool:
    """True when a fork cannot stand in for a process started with ``PYTHONPATH`` giving
    ``path``: it drops a folder the server's own had (its modules may be imported), or
    adds one that is not a folder (a zip) or that holds a module or package named as one
    of the server's imported ``modules`` (the fresh process would import that one)."""
    if not set(server_path) <= set(path):
        return True
    imported = set(modules)
    for entry in set(path) - set(server_path):
        folder = Path(entry)
        if not folder.exists():
            continue
        if not folder.is_dir():
            return True
        offered = {
            item.name.split(".")[0]
            for item in folder.iterdir()
            if item.is_dir() or item.suffix in (".py", ".pyc", ".so")
        }
        if offered & imported:
            return True
    return False


class _Server:
    """The client's end of one server process: one forked command at a time."""

    def __init__(self) -> None:
        self.env = dict(START_ENV)
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: select() on the pipe then says whether a line waits
        )
        self.busy = threading.Lock()
        self._started: dict | None = None
        atexit.register(self.stop)

    @property
    def started(self) -> dict:
        """The server's first line, sent once its imports are done: what they wrote into
        its environment (TensorFlow sets ``TF2_BEHAVIOR``, ``ENABLE_RUNTIME_UPTIME_TELEMETRY``
        ...: ``set_by_imports``) and the top-level modules it holds (``modules``)."""
        if self._started is None:
            self._started = json.loads(self._answer(None) or b"{}")
        return self._started

    @property
    def set_by_imports(self) -> dict[str, str]:
        return self.started["set_by_imports"]

    def stop(self) -> None:
        """End the server and wait for it: its children's CPU time is then counted in this
        process's (``time pytest``, ``benchmarks/suite_cost.py``)."""
        self.process.kill()
        self.process.wait()

    def claim(self, env: dict[str, str], cwd: Path) -> bool:
        """True, and the server is this caller's until :meth:`status` answers, when it can
        run a command with ``env`` in ``cwd``."""
        return (
            self.process.poll() is None
            and not self.differences(env, cwd)
            and self.busy.acquire(blocking=False)
        )

    def differences(self, env: dict[str, str], cwd: Path = ROOT) -> list[str]:
        """Variables ``env`` sets otherwise than the server and that a fork cannot honour."""
        imported = self.set_by_imports
        keys = (set(env) | set(self.env)) - {"PYTHONPATH"}
        differing = [
            k
            for k in keys
            if not _may_differ(k)
            and (
                env.get(k, imported[k]) != imported[k]  # unset: the imports set it as here
                if k in imported
                else env.get(k) != self.env.get(k)
            )
        ]
        server_path = _entries(self.env.get("PYTHONPATH"), ROOT)
        path = [e for e in _entries(env.get("PYTHONPATH"), cwd) if e != os.path.abspath(cwd)]
        if _shadowing(server_path, path, self.started["modules"]):  # (cwd is first anyway)
            differing.append("PYTHONPATH")
        return sorted(differing)

    def fork(self, argv: list[str], env: dict[str, str], cwd: Path, **streams) -> int:
        """Start ``argv`` forked; its pid. ``streams``: stdout and stderr paths, and
        ``ctrl_c`` (Ctrl-C's signals at their defaults, as a shell's foreground command)."""
        assert self.process.stdin
        request = {
            "argv": argv, "env": env, "set_by_imports": self.set_by_imports, "cwd": str(cwd),
            **streams,
        }  # fmt: skip
        message = memoryview(json.dumps(request).encode() + b"\n")
        while message:
            message = message[self.process.stdin.write(message) :]
        return int(self._answer(None))

    def status(self, timeout: float | None) -> int | None:
        """The forked command's exit status once it has ended (None if not within
        ``timeout``); the server is free again."""
        answer = self._answer(timeout)
        if answer is None:
            return None
        self.busy.release()
        return int(answer)

    def _answer(self, timeout: float | None) -> bytes | None:
        """The server's next line, read a byte at a time so that nothing after it is read
        ahead of time (the exit status can follow the pid at once); None if its first byte
        has not come within ``timeout``."""
        assert self.process.stdout
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = b""
        while not line.endswith(b"\n"):
            byte = self.process.stdout.read(1)
            if not byte:
                raise RuntimeError("the tests' preloaded server ended")
            line += byte
        return line


@functools.cache
def _server() -> _Server:
    return _Server()


def _claimed(env: dict[str, str], cwd: Path = ROOT) -> _Server | None:
    if os.environ.get(FORK_ENV, "1") == "0":
        return None
    server = _server()
    return server if server.claim(env, cwd) else None


def run_module(
    module: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess:
    """``python -m module *args`` in ``cwd`` with ``env``, output captured as text: forked
    from the preloaded server when it can be, else a plain subprocess."""
    argv = [sys.executable, "-m", module, *args]
    server = _claimed(env, cwd)
    if server is None:
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    with tempfile.TemporaryDirectory(prefix="preloaded-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        pid = server.fork(argv, env, cwd, stdout=str(out), stderr=str(err))
        code = server.status(timeout)
        if code is None:
            os.killpg(pid, signal.SIGKILL)
            server.status(None)
            raise subprocess.TimeoutExpired(argv, timeout, out.read_text(), err.read_text())
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())


class Forked:
    """A forked command as a test follows it: the parts of ``subprocess.Popen`` the tests
    use (``pid``, ``stdout``: stdout and stderr merged, ``poll``, ``wait``,
    ``send_signal``, ``returncode``)."""

    def __init__(self, server: _Server, argv: list[str], env, cwd: Path, ctrl_c: bool):
        self._server = server
        self._folder = tempfile.TemporaryDirectory(prefix="preloaded-")
        fifo = Path(self._folder.name) / "output"
        os.mkfifo(fifo)
        self.pid = server.fork(argv, env, cwd, stdout=str(fifo), stderr=str(fifo), ctrl_c=ctrl_c)
        self.stdout = fifo.open()  # returns once the child has opened it to write
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._server.status(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self._folder.cleanup()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)


def start_module(
    module: str, args: list[str], env: dict[str, str], cwd: Path, ctrl_c: bool = False
) -> Forked | None:
    """``python -m module *args`` started forked, its output followed through
    :attr:`Forked.stdout`; None when it cannot be forked (start a plain subprocess)."""
    server = _claimed(env, cwd)
    if server is None:
        return None
    return Forked(server, [sys.executable, "-m", module, *args], env, cwd, ctrl_c)


# The server's end ------------------------------------------------------------------------


def _child(request: dict) -> None:
    """In the forked child: become ``python -m <module> <args>`` and run it to its exit."""
    import importlib
    import runpy

    os.setsid()
    if request.get("ctrl_c"):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    os.chdir(request["cwd"])
    server_path = _entries(os.environ.get("PYTHONPATH"), ROOT)
    path = _entries(request["env"].get("PYTHONPATH"), request["cwd"])
    os.environ.clear()
    os.environ.update({**request["set_by_imports"], **request["env"]})  # as the imports would
    with open(os.devnull) as stdin, open(request["stdout"], "w") as out:
        os.dup2(stdin.fileno(), 0)
        os.dup2(out.fileno(), 1)
        if request["stderr"] == request["stdout"]:
            os.dup2(out.fileno(), 2)
        else:
            with open(request["stderr"], "w") as err:
                os.dup2(err.fileno(), 2)
    # As Python: PYTHONPATH's folders before the site's (duplicates dropped), then ``-m``
    # puts the working folder first.
    rest = [entry for entry in sys.path[1:] if entry not in server_path]
    sys.path[:] = [request["cwd"], *dict.fromkeys([*path, *rest])]
    importlib.invalidate_caches()
    _, _, module, *args = request["argv"]
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status: int | None = 0
    except SystemExit as done:
        status = _exit_status(done)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        status = None  # Python's own way: the process ends by SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    _end(status)


def _exit_status(done: SystemExit) -> int:
    """The status ``sys.exit(code)`` gives a process, printing a message code as Python does."""
    if done.code is None:
        return 0
    if isinstance(done.code, int):
        return done.code
    print(done.code, file=sys.stderr)
    return 1


def _end(status: int | None) -> None:
    """End the child as Python's shutdown would, up to its last step: wait for its
    non-daemon threads, run its atexit handlers, flush its standard streams; then leave
    without tearing down the modules it inherited. That teardown (every object of
    TensorFlow, Keras, MLflow... freed, each page they live on copied from the server
    first) took ~2.5 s of every command; nothing of the command's own is lost by skipping
    it. ``status`` None: end by SIGINT, as Python does after an uncaught Ctrl-C."""
    import atexit

    threading._shutdown()  # type: ignore[attr-defined]  (what Python's shutdown calls first)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if status is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF if status is not None else 1)


def _serve() -> None:
    import importlib

    import sweep.backend

    before = dict(os.environ)
    sweep.backend.loaded("keras")
    for name in PRELOADED:
        importlib.import_module(name)
    set_by_imports = {k: v for k, v in os.environ.items() if before.get(k) != v}
    modules = sorted({name.split(".")[0] for name in sys.modules})
    print(json.dumps({"set_by_imports": set_by_imports, "modules": modules}), flush=True)
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
