"""The tests' preloaded server (tests/helpers/preloaded.py): a forked ``python -m sweep``
answers as a plain one does, and a command it cannot stand in for runs plain."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from helpers import preloaded
from helpers.config import ROOT, sweep_env
from helpers.processes import Followed
from helpers.sweeps import QUICK

REFUSED = ["--multirun", "quantize=none,int4"]  # refused before any job: one line, status 2


def _untimed(output: str) -> str:
    return re.sub(r"^\[\d\d:\d\d:\d\d\]", "[time]", output, flags=re.M)


def _env(tmp_path: Path) -> dict[str, str]:
    """A sweep's environment over the server's own: whatever earlier tests of this process
    left in ``os.environ`` (``sweep_env`` copies it), the fork can honour this one."""
    variables = ("SWEEP_OUTPUTS", "SWEEP_DATA_DIR", "HYDRA_FULL_ERROR")
    return {**preloaded.START_ENV, **{k: sweep_env(tmp_path)[k] for k in variables}}


def test_a_forked_command_answers_as_a_plain_one(tmp_path: Path) -> None:
    env = _env(tmp_path)
    plain = subprocess.run(
        [sys.executable, "-m", "sweep", *REFUSED],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    forked = preloaded.run_module("sweep", REFUSED, env, ROOT, timeout=600)
    assert (forked.returncode, _untimed(forked.stdout), forked.stderr) == (
        plain.returncode,
        _untimed(plain.stdout),
        plain.stderr,
    )
    assert forked.returncode == 2 and "quantize=int4 is not an option of" in forked.stdout


def test_a_followed_command_is_forked_in_a_session_of_its_own(tmp_path: Path) -> None:
    quick = [o for o in QUICK if not o.startswith("train.epochs")]
    job = Followed([sys.executable, "-m", "sweep", *quick, "train.epochs=10000"], _env(tmp_path))
    assert isinstance(job.process, preloaded.Forked)
    assert os.getsid(job.pid) == job.pid
    job.wait_for("train epoch 1/10000")
    job.signal_group(signal.SIGKILL)
    assert job.finish() == -signal.SIGKILL


def test_a_variable_read_at_start_up_makes_the_command_plain(tmp_path: Path) -> None:
    """PYTHONHASHSEED is read when Python starts: a fork could not honour a new one."""
    env = {**_env(tmp_path), "PYTHONHASHSEED": "7"}
    assert preloaded._claimed(env) is None
    claimed = preloaded._claimed(_env(tmp_path))
    assert claimed is not None, preloaded._server().differences(_env(tmp_path))
    assert preloaded._claimed(_env(tmp_path)) is None  # busy: one forked command at a time
    claimed.busy.release()


def test_a_sweep_started_after_the_test_process_used_tensorflow_and_mlflow_still_forks(
    tmp_path: Path,
) -> None:
    """Libraries write variables into the environment of the process using them: importing
    TensorFlow sets ``TF2_BEHAVIOR``, ``ENABLE_RUNTIME_UPTIME_TELEMETRY``..., reading an MLflow
    store ``_MLFLOW_TELEMETRY_SESSION_ID``. Every later command of such a test process ran
    plain until the server compared environments with what its own imports had set."""
    from mlflow.tracking import MlflowClient

    from sweep.backend import loaded

    loaded("keras")
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    env = sweep_env(tmp_path)  # os.environ as the test process now has it, as run_sweep's
    assert preloaded._server().differences(env) == []
    forked = preloaded.run_module("sweep", REFUSED, env, ROOT, timeout=600)
    assert forked.returncode == 2 and "quantize=int4 is not an option of" in forked.stdout


def _adding(tmp_path: Path, *folders: str) -> dict[str, str]:
    """``_env`` with ``folders`` put before the server's own PYTHONPATH (if it has one)."""
    path = [*folders, preloaded.START_ENV.get("PYTHONPATH", "")]
    return {**_env(tmp_path), "PYTHONPATH": os.pathsep.join(path)}


TOOL = """import json, sys
import users_helper
print(json.dumps(sys.path), users_helper.NAME)
"""


def test_a_pythonpath_adding_a_users_folder_is_forked_with_the_path_python_would_give(
    tmp_path: Path,
) -> None:
    """A user's own code on PYTHONPATH (the tests' own checks and models): the forked command
    finds it, on the very ``sys.path`` a fresh ``python -m`` has."""
    user = tmp_path / "user code"
    user.mkdir()
    (user / "users_tool.py").write_text(TOOL)
    (user / "users_helper.py").write_text("NAME = 'helper'\n")
    env = _adding(tmp_path, str(user))  # ends with "" (the working folder) if it has none
    assert preloaded._server().differences(env) == []
    plain = subprocess.run(
        [sys.executable, "-m", "users_tool"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    forked = preloaded.run_module("users_tool", [], env, ROOT, timeout=600)
    assert plain.returncode == 0 and plain.stdout.strip().endswith("helper"), plain.stderr
    assert (forked.returncode, forked.stdout) == (0, plain.stdout), forked.stderr


def test_a_pythonpath_shadowing_an_imported_module_makes_the_command_plain(
    tmp_path: Path,
) -> None:
    """A folder offering ``mlflow``: a fresh process would import that one, the server has
    already imported the real one."""
    (tmp_path / "mlflow.py").write_text("")
    (tmp_path / "harmless.py").write_text("")
    assert preloaded._server().differences(_adding(tmp_path, str(tmp_path))) == ["PYTHONPATH"]
    (tmp_path / "mlflow.py").unlink()
    assert preloaded._server().differences(_adding(tmp_path, str(tmp_path))) == []
