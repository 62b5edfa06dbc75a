"""Hostile model and data files: each costs a bounded time and memory and earns one line.

Every file here is made by the test itself (TF's converter, an edited flatbuffer, a
crafted zip) and goes through the real tools: sweep-profile as a user runs it,
tflite-micro in its child process, the .npz reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.config import DATA, ROOT
from helpers.hostile import (
    SEGFAULT_MODEL,
    command_line,
    wait_until,
    while_forever_tflite,
    with_input_shape,
)
from helpers.processes import SAFETY_NET_SECONDS, session_members

BUDGET = SAFETY_NET_SECONDS
"""How long a test waits for sweep-profile before failing: a safety net against a hang, never
reached when the code works (the runtime's own budgets end the model in seconds); no test
asserts on how long a process took, which a busy machine can stretch."""
FIRST_INVOKE_SECONDS = "4"
"""The models here never end their first invoke: they wait 4 s for their verdict, not the
default 20 (the budget is what is tested, not its default)."""
OVERRUN = re.compile(rf"tflite-micro did not finish within {FIRST_INVOKE_SECONDS} s on this model")


@pytest.fixture(scope="module")
def forever(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "forever.tflite"
    path.write_bytes(while_forever_tflite())
    return path


def _profile_command(model: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "sweep.cli.sweep_profile", str(model), *overrides]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SWEEP_OUTPUTS": str(tmp_path / "outputs"),
        "SWEEP_FIRST_INVOKE_SECONDS": FIRST_INVOKE_SECONDS,
    }


@contextlib.contextmanager
def _session(command: list[str], env: dict[str, str]):
    """A process in a session of its own; whatever is left of the session is killed after."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        for pid in session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


# --- a model that loops forever ----------------------------------------------------------


def test_a_model_that_loops_forever_gets_a_verdict_within_its_budget(
    forever: Path, tmp_path: Path
) -> None:
    with _session(_profile_command(forever, "target=cortex_m4"), _env(tmp_path)) as process:
        try:
            out, err = process.communicate(timeout=BUDGET)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sweep-profile still runs after {BUDGET:g} s (the child spins)")
        assert process.returncode == 1, err[-3000:]
        assert "Traceback" not in out + err
        head = "forever.tflite on cortex_m4 (cortex-m4f @ 120 MHz): does not run on tflite_micro: "
        first = out.splitlines()[0]
        assert first.startswith(head) and OVERRUN.fullmatch(first[len(head) :]), first
        # The forked child was killed; the fork server and Python's resource tracker end
        # when their parent has ended.
        wait_until(lambda: not session_members(process.pid), BUDGET, "processes left behind")


def test_a_bad_first_invoke_budget_stops_sweep_profile_with_one_line(
    forever: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from sweep.cli import sweep_profile

    monkeypatch.setenv("SWEEP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("SWEEP_FIRST_INVOKE_SECONDS", "soon")
    assert sweep_profile.main([str(forever), "target=cortex_m4"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "error: SWEEP_FIRST_INVOKE_SECONDS='soon' is not valid: expected seconds above 0 and "
        "at most 1800, or unset for 20\n"
    )


def test_a_killed_sweep_profile_leaves_no_runtime_running(forever: Path, tmp_path: Path) -> None:
    """SIGKILL runs no clean-up code: the kernel ends the child (PR_SET_PDEATHSIG)."""
    with _session(_profile_command(forever, "target=cortex_m4"), _env(tmp_path)) as process:

        def running_the_model() -> list[int]:
            # The fork server's child: its parent is the fork server, itself a child of ours.
            servers = [p for p in session_members(process.pid) if "forkserver" in command_line(p)]
            return [p for p in servers if _parent(p) in servers]

        wait_until(running_the_model, BUDGET, "the model never started in tflite-micro")
        spinning = running_the_model()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_until(lambda: not session_members(process.pid), BUDGET, "processes left behind")
        assert spinning and not any(_alive(pid) for pid in spinning)


def _alive(pid: int) -> bool:
    """Running, or stopped: not gone and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return -1


MEASURE = """
import json, sys
from pathlib import Path
import numpy as np
from helpers.config import compose
from sweep.checks import ModelUnderTest
from sweep.pipeline.components import instantiate_group

model = Path(sys.argv[1])
board, _ = instantiate_group("target", compose(["target=cortex_m4", "target.emulate=false"]).target)
x, y = np.zeros((3, 4), dtype=np.float32), np.zeros(3, np.int64)
found = board.measure(ModelUnderTest(model.read_bytes(), x, y, model.parent))
print(json.dumps({"metrics": found.metrics, "tags": found.tags}))
"""


def test_a_sequence_whose_model_loops_forever_gets_mcu_runs_0(
    forever: Path, tmp_path: Path
) -> None:
    """The job's path (the target's checks, as a job runs them), in a process of its own so
    that a hang fails the test instead of stopping it."""
    paths = [str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**_env(tmp_path), "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with _session([sys.executable, "-c", MEASURE, str(forever)], env) as process:
        try:
            out, err = process.communicate(timeout=BUDGET)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the check still runs after {BUDGET:g} s (the child spins)")
    assert process.returncode == 0, err[-3000:]
    found = json.loads(out.strip().splitlines()[-1])
    assert found["metrics"]["mcu_runs"] == 0 and found["metrics"]["fits_target"] == 0
    assert OVERRUN.fullmatch(found["tags"]["mcu_reason"]), found["tags"]["mcu_reason"]


def test_a_model_that_loops_forever_in_the_desktop_runtime_is_refused_in_time(
    tmp_path: Path,
) -> None:
    """With dataset=..., sweep-profile runs the model through LiteRT for its accuracy too."""
    model = tmp_path / "forever784.tflite"
    model.write_bytes(while_forever_tflite((1, 784)))  # takes MNIST's 28×28 images
    command = _profile_command(
        model, "target=cortex_m4", "dataset=mnist", f"dataset.path={DATA / 'mnist'}"
    )
    with _session(command, _env(tmp_path)) as process:
        try:
            out, err = process.communicate(timeout=BUDGET)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sweep-profile still runs after {BUDGET:g} s (LiteRT spins)")
        assert process.returncode == 2, (out + err)[-3000:]
        assert out == "" and "Traceback" not in err
        assert re.fullmatch(
            rf"error: {re.escape(str(model))}: LiteRT did not finish within "
            rf"{FIRST_INVOKE_SECONDS} s on this model",
            err.strip(),
        ), err
        wait_until(lambda: not session_members(process.pid), BUDGET, "processes left behind")


def test_more_pseudo_random_images_than_memory_holds_give_one_line(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(SEGFAULT_MODEL.read_bytes())
    done = subprocess.run(
        [*_profile_command(model, "target=cortex_m4"), "--images", "100000000"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=BUDGET,
    )
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--images=100000000 is not valid" in lines[0], lines


# --- shapes no runtime could hold --------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        ([1, -1, 28], "every dimension must be at least 1"),
        ([1, 0, 28], "every dimension must be at least 1"),
        ([1, 2**31 - 1, 28], "more than the 67,108,864-byte arena"),
        ([1, 10000, 10000], "more than the 67,108,864-byte arena"),  # 100 MB from 432 bytes
    ],
)
def test_a_shape_no_runtime_could_hold_gives_one_line_and_status_2(
    tmp_path: Path, shape: list[int], says: str
) -> None:
    model = tmp_path / "shape.tflite"
    model.write_bytes(with_input_shape(shape))
    done = subprocess.run(
        _profile_command(model, "target=cortex_m4", "target.emulate=false"),
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=BUDGET,
    )
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {model}: its input 0"), lines
    assert says in lines[0] and str(shape) in lines[0]


# --- an .npz that inflates ----------------------------------------------------------------


def _npz_bomb(path: Path, mib: int = 128) -> Path:
    """A Keras-style .npz whose x_train inflates from ~128 KiB to ``mib`` MiB of zeros,
    written in chunks (the test never holds the array)."""
    rows = mib * 2**20 // (28 * 28)
    header = {"descr": "|u1", "fortran_order": False, "shape": (rows, 28, 28)}
    small = {
        "y_train": np.zeros(rows, np.uint8),
        "x_test": np.zeros((10, 28, 28), np.uint8),
        "y_test": np.zeros(10, np.uint8),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(2**20)
            for _ in range(rows * 28 * 28 // len(chunk)):
                member.write(chunk)
        for name, array in small.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    return path


def _lying_npz(path: Path) -> Path:
    """A tiny .npz whose x_train header claims 10^12 images of 28×28."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(28 * 28))
        for name in ("y_train", "x_test", "y_test"):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(1, np.uint8))
    return path


@pytest.mark.parametrize("make", [_npz_bomb, _lying_npz], ids=["bomb", "lying-header"])
def test_an_npz_that_would_inflate_is_refused_before_it_is(tmp_path: Path, make) -> None:
    from sweep.groups.dataset import DataError, load_npz

    path = make(tmp_path / "data.npz")
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"x_train") as refused:
            load_npz(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB allocated while reading it"


def test_a_real_npz_still_loads(tmp_path: Path, mnist_small) -> None:
    from sweep.groups.dataset import load_npz

    path = tmp_path / "mnist.npz"
    raw = {
        "x_train": (mnist_small.x_train * 255).round().astype(np.uint8),
        "y_train": mnist_small.y_train,
        "x_test": (mnist_small.x_test * 255).round().astype(np.uint8),
        "y_test": mnist_small.y_test,
    }
    np.savez_compressed(path, **raw)
    arrays = load_npz(path)
    for array, key in zip(arrays, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        np.testing.assert_array_equal(array, raw[key])
