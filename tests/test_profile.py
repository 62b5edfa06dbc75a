"""sweep-profile on any .tflite, and where the board estimates come from.

Real tools throughout: Hydra composes the target from conf/, tflite-micro probes the
model, the GNU Arm toolchain builds TFLM + CMSIS-NN for the Cortex-M4F and Unicorn
emulates it (the slow tests). The project's own CNN (tests/conftest.py) is the model
wherever any model will do; only the check of the fitted board's estimate needs an MLPerf
Tiny reference model, which lives outside the repository (``<project>/../shared/mlperf_tiny``
or ``$SWEEP_MLPERF_TINY``; ``needs("mlperf_tiny")``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.config import ROOT, compose, composed_target
from helpers.processes import SAFETY_NET_SECONDS
from helpers.system import MLPERF_TINY, needs_cortex_m

from sweep.cli.sweep_profile import main
from sweep.runtimes.cortex_m import REFERENCE_BOARDS, estimate, is_emulated
from sweep.runtimes.cortex_m.fit import FIT_ROWS, fit_memory, mixes_for
from sweep.runtimes.cortex_m.published import MODEL_FILES, ROWS


def _boards() -> dict:
    """Every board of conf/target, composed with its CPU's base and instantiated."""
    names = [p.stem for p in (ROOT / "conf" / "target").glob("*.yaml") if p.stem[0] != "_"]
    targets = {n: composed_target(n) for n in names}
    return {n: t for n, t in targets.items() if t.is_microcontroller}


BOARDS = _boards()
EMULATED_BOARDS = {n: b for n, b in BOARDS.items() if is_emulated(b.cpu)}


@pytest.fixture(scope="module")
def cnn_int8(converted: dict[str, bytes], tmp_path_factory) -> Path:
    """The project's reference CNN, full int8, as a file: any valid .tflite will do."""
    path = tmp_path_factory.mktemp("models") / "cnn_int8.tflite"
    path.write_bytes(converted["int8"])
    return path


def _cli(capsys, *args: str | Path) -> tuple[int, list[str], list[str]]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def _json_metrics(out: list[str]) -> dict[str, float]:
    """The metrics ``--json`` prints after the report."""
    start = out.index("{")
    return json.loads("\n".join(out[start : out.index("}", start) + 1]))["metrics"]


# ------------------------------------------------------------------ the three bad inputs


def test_garbage_file_gives_one_line_and_status_2(tmp_path: Path):
    """The installed command, as a user runs it: one line on stderr, no traceback."""
    junk = tmp_path / "model.tflite"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli.sweep_profile", str(junk), "target=nano33_ble_sense"],
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_SECONDS,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: {junk} is not a TFLite model (no 'TFL3' flatbuffer identifier at "
                     "bytes 4-8; 4096 bytes)"]  # fmt: skip


def test_damaged_tflite_gives_one_line(tmp_path: Path, capsys, cnn_int8: Path):
    cut = tmp_path / "cut.tflite"
    data = cnn_int8.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, out, err = _cli(capsys, cut, "target=cortex_m4")
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith(f"error: {cut} is not a readable TFLite model")


def test_float16_model_says_why_it_does_not_run(tmp_path: Path, capsys, converted):
    model = tmp_path / "cnn_float16.tflite"
    model.write_bytes(converted["float16"])
    code, out, err = _cli(capsys, model, "target=nano33_ble_sense")
    assert code == 1
    assert out[0].startswith(
        "cnn_float16.tflite on nano33_ble_sense (cortex-m4f @ 64 MHz): does not run on "
        "tflite_micro: it stores float16 tensors, which tflite_micro does not run ("
    )
    assert "DEQUANTIZE" in out[0]  # the runtime's own words follow
    assert any("not emulated: it does not run" in line for line in out)
    assert not any("Traceback" in line for line in out + err)


def test_model_larger_than_the_board_says_it_does_not_fit(tmp_path: Path, capsys):
    """A real 4.5 MB float32 model: tflite-micro runs it, the 1 MB board cannot hold it."""
    from sweep.backend import keras
    from sweep.groups.quantize import Float32

    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.layers.Input((1024,)), keras.layers.Dense(1100), keras.layers.Dense(10)]
    )
    data = Float32().convert(net, np.random.default_rng(0).random((8, 1024), dtype=np.float32))
    model = tmp_path / "big.tflite"
    model.write_bytes(data)
    code, out, err = _cli(capsys, model, "target=nano33_ble_sense")
    assert code == 1 and err == []
    assert out[0] == (
        "big.tflite on nano33_ble_sense (cortex-m4f @ 64 MHz): runs on tflite_micro but does "
        f"not fit: model needs {len(data)} B of flash, board has {1024 * 1024} B"
    )
    assert any("not emulated: it does not fit nano33_ble_sense" in line for line in out)


# ------------------------------------------------------------------ the same settings as a sweep


@pytest.mark.parametrize(
    "override",
    ["target.clock_mhz=0", "target.cpi=-1", "target.cpu=cortex-m9", "+target.speed=3"],
)
def test_bad_target_settings_give_the_sweeps_one_line(override: str, capsys, cnn_int8: Path):
    from sweep.pipeline.components import instantiate_components
    from sweep.settings import ConfigError

    with pytest.raises(ConfigError) as sweep_says:
        instantiate_components(compose(["target=cortex_m4", override]))
    code, out, err = _cli(capsys, cnn_int8, "target=cortex_m4", override)
    assert code == 2 and out == []
    assert err == [f"error: {sweep_says.value}"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ([], "no board given: add target=<board>, one of ['cortex_m4', "),
        (["target=nope"], "target=nope is not valid: expected one of ['cortex_m4', "),
        (["target=host"], "target=host is not a board: sweep-profile needs a microcontroller"),
    ],
)
def test_missing_or_unknown_board_gives_one_line(overrides, says, capsys, cnn_int8: Path):
    code, out, err = _cli(capsys, cnn_int8, *overrides)
    assert code == 2 and out == [] and len(err) == 1
    assert err[0].startswith(f"error: {says}")


# ------------------------------------------------------------------ where estimates come from


def test_no_board_pins_its_cycles_and_each_says_what_is_calibrated():
    """Every emulated core has a board; no board YAML pins cycles per instruction; a board
    whose memory system was fitted on its own published rows is calibrated, the others say
    their memory is not (or not described), in the basis the run records."""
    assert {b.cpu for b in EMULATED_BOARDS.values()} == {
        "cortex-m4f", "cortex-m7", "cortex-m33", "cortex-m0plus"
    }  # fmt: skip
    fitted = {"cortex_m4", "nucleo_l4r5zi", "ek_ra6m4", "nrf5340_dk"}
    for name, board in EMULATED_BOARDS.items():
        text = (ROOT / "conf" / "target" / f"{name}.yaml").read_text()
        assert "cpi" not in text and board.cpi is None, name
        memory = board.memory_system
        if name in fitted:
            assert memory.name == memory.calibration and memory.calibration in FIT_ROWS, name
        mixes = mixes_for(board.cpu)
        if not mixes:
            continue
        found = estimate(mixes["kws"], board.cpu, memory or REFERENCE_BOARDS["rpi_pico"],
                         board.clock_mhz)  # fmt: skip
        assert found.calibrated == (name in fitted), name
        assert ("NOT calibrated" in found.basis) != found.calibrated, (name, found.basis)


def _readme_estimate_table() -> dict[tuple[str, str], list[str]]:
    """The README's table of fitted boards: (board, model) -> its cells."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### How close the board estimate is") :]
    lines = [line for line in section.splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    return {(c[0].strip("`"), c[1].split()[0]): c[2:] for c in cells}


def _pct(value: float) -> str:
    """As the README writes a signed percentage (a true minus sign)."""
    return f"{value:+.1f} %".replace("-", "−")


def test_the_fitted_boards_estimates_are_the_readmes_and_within_15_percent():
    """Each fitted board at its published clock: the estimate of kws and ic from the
    measured instruction mix, the published row it is fitted on, the error and the
    leave-one-out error (the exposure fitted on the other model alone) are what the README
    says, and the error is within ±15 %."""
    rows = _readme_estimate_table()
    boards = {"cortex_m4": "nucleo_l4r5zi", "ek_ra6m4": "ek_ra6m4", "nrf5340_dk": "nrf5340_dk"}
    for board_name, memory in boards.items():
        board = BOARDS[board_name]
        fit = fit_memory(memory)
        published = ROWS[FIT_ROWS[memory]]
        for model in MODEL_FILES:
            mix = mixes_for(board.cpu)[model]
            found = estimate(mix, board.cpu, board.memory_system, board.clock_mhz)
            error = 100 * (found.ms / published.latency_ms[model] - 1)
            assert abs(error) <= 15, (board_name, model, error)
            assert error == pytest.approx(fit.residuals_pct[model], abs=0.05)
            assert rows[(board_name, model)] == [
                f"{board.cpu} @ {board.clock_mhz:g} MHz",
                f"{mix.instructions:,}",
                f"{published.latency_ms[model]:g} ms",
                f"{found.ms:.1f} ms ({found.band_ms[0]:.1f}-{found.band_ms[1]:.1f})",
                _pct(error),
                _pct(fit.leave_one_out_pct[model]),
            ], (board_name, model)


@needs_cortex_m
@pytest.mark.slow
def test_a_board_at_another_clock_gets_that_clocks_wait_states(cnn_int8: Path, capsys):
    """The same model on the reference board at its 120 MHz and at 80 MHz set on the
    command line: the same emulated count; at 80 MHz the flash needs 3 wait states instead
    of 5 (the datasheet's table), so fewer cycles, and ms = cycles ÷ clock. The 64 MHz
    board that describes no memory system counts the core alone (its basis says so). A
    clock above the flash's table is one line, exit 2."""
    runs = {}
    for board, clock in (("cortex_m4", "120"), ("cortex_m4", "80"), ("nano33_ble_sense", "64")):
        code, out, err = _cli(capsys, cnn_int8, f"target={board}",
                              f"target.clock_mhz={clock}", "--json")  # fmt: skip
        assert code == 0, err
        assert out[0].startswith(f"cnn_int8.tflite on {board} (cortex-m4f @ {clock} MHz): runs")
        runs[clock] = (_json_metrics(out), "\n".join(out))
    (at_120, text_120), (at_80, _), (at_64, text_64) = runs["120"], runs["80"], runs["64"]
    assert at_120["mcu_instructions"] == at_80["mcu_instructions"] == at_64["mcu_instructions"]
    assert at_64["mcu_est_cycles"] < at_80["mcu_est_cycles"] < at_120["mcu_est_cycles"]
    for metrics, clock in ((at_120, 120), (at_80, 80), (at_64, 64)):
        ms = metrics["mcu_est_cycles"] / clock / 1e3
        assert metrics["mcu_est_latency_ms"] == pytest.approx(ms)
        assert metrics["mcu_est_latency_low_ms"] <= metrics["mcu_est_latency_ms"]
        assert metrics["mcu_est_latency_ms"] <= metrics.get("mcu_est_latency_high_ms", math.inf)
    assert "mcu_est_latency_high_ms" not in at_64  # what its flash adds is unknown: no slow edge
    assert "5 wait states at 120 MHz" in text_120 and "calibrated on" in text_120
    assert "memory: NOT described (target.memory)" in text_64
    code, out, err = _cli(capsys, cnn_int8, "target=cortex_m4", "target.clock_mhz=168")
    assert code == 2 and out == [] and len(err) == 1
    assert err[0].startswith("error: target.clock_mhz=168: ") and "120 MHz" in err[0]


def test_mlflow_records_one_top_level_run_and_says_how_to_browse_it(
    cnn_int8: Path, isolated: Path, capsys
):
    """``--mlflow`` on a model that runs and fits (exit 0), without the board's build
    (``target.emulate=false``, so on any machine): one top-level run with the target's
    settings, the figures printed, the model and profile.json; the last line is the
    command that opens the store in the MLflow UI."""
    from mlflow.tracking import MlflowClient

    code, out, err = _cli(
        capsys, cnn_int8, "target=cortex_m4", "target.clock_mhz=80", "target.emulate=false",
        "--mlflow", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert out[0].startswith("cnn_int8.tflite on cortex_m4 (cortex-m4f @ 80 MHz): runs on")
    assert any("not emulated: target.emulate=false for cortex_m4" in line for line in out)
    store = f"sqlite:///{isolated / 'outputs' / 'mlflow.db'}"
    client = MlflowClient(store)
    [run] = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run.data.tags["sweep.role"] == "profile" and "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["target.clock_mhz"] == "80"
    assert run.data.params["target.emulate"] == "False"
    assert run.data.metrics == pytest.approx(_json_metrics(out))
    assert run.data.metrics["mcu_runs"] == run.data.metrics["fits_target"] == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"cnn_int8.tflite", "profile.json"} <= artifacts
    assert out[-1] == (
        f"recorded as MLflow run {run.info.run_id} (experiment 'sweep'); browse: mlflow ui "
        f"--backend-store-uri {store} --host 127.0.0.1"
    )


# ------------------------------------------------------------------ emulated


@needs_cortex_m
@pytest.mark.needs("mlperf_tiny")
@pytest.mark.slow
def test_kws_profile_on_cortex_m4_matches_the_fitted_board_and_is_recorded(isolated: Path, capsys):
    """The full command on the keyword-spotting model: the emulated count is the one the
    fit was made with, the estimate is the cycle model's for the reference board (within
    ±15 % of the published row it is fitted on), the report says what is calibrated, and
    --mlflow records one top-level run."""
    from mlflow.tracking import MlflowClient

    bundle = isolated / "bundle"
    code, out, err = _cli(
        capsys, MLPERF_TINY / MODEL_FILES["kws"], "target=cortex_m4", "--mlflow", "--bundle", bundle
    )
    assert code == 0, err
    board = BOARDS["cortex_m4"]
    mix = mixes_for("cortex-m4f")["kws"]
    expected = estimate(mix, "cortex-m4f", board.memory_system, 120, board.active_power_mw)
    assert out[0] == (
        "kws_ref_model.tflite on cortex_m4 (cortex-m4f @ 120 MHz): runs on tflite_micro and "
        f"fits; estimated {expected.ms:,.1f} ms and {expected.energy_uj:,.0f} µJ per inference"
    )
    text = "\n".join(out)
    assert f"{mix.instructions:,} per inference (emulated; outputs equal tflite-micro's)" in text
    assert f"band {expected.band_ms[0]:,.1f}-{expected.band_ms[1]:,.1f} ms" in text
    assert expected.basis in text and expected.calibrated
    assert "deterministic pseudo-random input" in text and "no accuracy is reported" in text
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"):
        assert op in text
    assert (bundle / "model_data.cc").exists()

    store = f"sqlite:///{isolated / 'outputs' / 'mlflow.db'}"
    client = MlflowClient(store)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["sweep.role"] == "profile"
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.tags["mcu_estimate_basis"] == expected.basis
    assert run.data.metrics["mcu_instructions"] == mix.instructions
    assert run.data.metrics["mcu_emulated_parity_ok"] == 1.0
    assert "mcu_accuracy" not in run.data.metrics
    latency = run.data.metrics["mcu_est_latency_ms"]
    assert latency == pytest.approx(expected.ms, rel=1e-6)  # the harness's few instructions
    assert abs(latency / ROWS[FIT_ROWS["nucleo_l4r5zi"]].latency_ms["kws"] - 1) <= 0.15
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"kws_ref_model.tflite", "profile.json", "bundle"} <= artifacts
