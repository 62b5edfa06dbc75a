"""sweep-profile on any .tflite, and the per-CPU calibration of the board estimates.

Real tools throughout: Hydra composes the target from conf/, tflite-micro probes the
model, the GNU Arm toolchain builds TFLM + CMSIS-NN for the Cortex-M4F and Unicorn
emulates it (the slow tests). The project's own CNN (tests/conftest.py) is the model
wherever any model will do; only the check of the calibrated count needs an MLPerf Tiny
reference model, which lives outside the repository (``<project>/../shared/mlperf_tiny``
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
from sweep.runtimes.cortex_m import calibration as cal

WIDEN = 0.25  # the published band, widened by 25 % on each side


def _boards() -> dict:
    """Every board of conf/target, composed with its CPU's base and instantiated."""
    names = [p.stem for p in (ROOT / "conf" / "target").glob("*.yaml") if p.stem[0] != "_"]
    targets = {n: composed_target(n) for n in names}
    return {n: t for n, t in targets.items() if t.is_microcontroller}


BOARDS = _boards()
EMULATED_BOARDS = {n: b for n, b in BOARDS.items() if b.cpu in cal.EMULATED_CPUS}


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


# ------------------------------------------------------------------ the calibration


def test_every_emulated_board_carries_its_cpus_calibrated_cpi():
    """One figure per CPU, computed by code from the published rows (never copied into a
    YAML), with where it comes from."""
    assert {c.cpu for c in EMULATED_BOARDS.values()} == set(cal.EMULATED_CPUS)
    for name, board in EMULATED_BOARDS.items():
        calibration = cal.calibrate(board.cpu)
        assert board.cycles_per_instruction == calibration.cpi, name
        text = (ROOT / "conf" / "target" / f"{name}.yaml").read_text()
        assert "cpi" not in text, name  # read from one place: the calibration
        if calibration.status == "calibrated":
            assert calibration.source.startswith("calibrated on MLPerf Tiny v1.0 OctoML"), name
            assert "residuals" in calibration.source and "leave-one-out" in calibration.source
        else:
            assert calibration.source.startswith("assumption, not calibrated"), name


def _readme_calibration_table() -> tuple[str, dict[str, list[str]]]:
    """The README's calibration table: its header, and each model's row as cells."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### How close the board estimate is") :]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    rows = {line.split("|")[1].split()[0]: [c.strip() for c in line.split("|")[2:-1]]
            for line in lines[2:] if line.split("|")[1].split()[0] in cal.MODELS}  # fmt: skip
    return lines[0], rows


def _pct(value: float) -> str:
    """As the README writes a signed percentage (a true minus sign)."""
    return f"{value:+.1f} %".replace("-", "−")


def test_the_calibration_and_its_unseen_model_predictions_are_the_readmes():
    """Cortex-M4F @ 120 MHz, recomputed here from the published rows by plain arithmetic:
    the CPI is the geometric mean of the two models' cycles per instruction; a CPI fitted
    on one model predicts the other, which the fit never saw (leave-one-out), inside the
    microTVM + CMSIS-NN .. TFLM 2.3.1 + CMSIS-NN band widened by 25 %; the code's
    calibration and the README's table say exactly that."""
    counts = cal.EMULATED_INSTRUCTIONS["cortex-m4f"]
    fast, slow = cal.ROWS[cal.CALIBRATION_ROW], cal.ROWS[cal.UPPER_ROW]
    assert BOARDS["cortex_m4"].clock_mhz == fast.clock_mhz == slow.clock_mhz == 120
    cycles = {m: fast.latency_ms[m] * 120_000 / counts[m] for m in cal.MODELS}
    cpi = math.sqrt(cycles["kws"] * cycles["ic"])
    calibration = cal.calibrate("cortex-m4f")
    assert calibration.cpi == pytest.approx(cpi, rel=1e-12)
    assert BOARDS["cortex_m4"].cycles_per_instruction == calibration.cpi
    upper = math.sqrt(math.prod(slow.latency_ms[m] * 120_000 / counts[m] for m in cal.MODELS))
    assert calibration.band_cpi == pytest.approx((cpi, upper), rel=1e-12)

    header, rows = _readme_calibration_table()
    assert f"estimate (CPI {cpi:.3f})" in header
    estimates = {}
    for model in cal.MODELS:
        (other,) = set(cal.MODELS) - {model}
        estimates[model] = counts[model] * cpi / 120_000
        unseen = counts[model] * cycles[other] / 120_000  # fitted without this model
        residual = 100 * (estimates[model] / fast.latency_ms[model] - 1)
        left_out = 100 * (unseen / fast.latency_ms[model] - 1)
        assert calibration.residuals_pct[model] == pytest.approx(residual, abs=1e-9)
        assert calibration.leave_one_out_pct[model] == pytest.approx(left_out, abs=1e-9)
        low, high = fast.latency_ms[model] * (1 - WIDEN), slow.latency_ms[model] * (1 + WIDEN)
        assert low <= estimates[model] <= high and low <= unseen <= high
        assert abs(left_out) < 2
        assert rows[model] == [
            f"{counts[model]:,}",
            f"{fast.latency_ms[model]:g} / {slow.latency_ms[model]:g} ms",
            f"{estimates[model]:.1f} ms",
            _pct(residual),
            _pct(left_out),
        ], model
    order = sorted(estimates, key=estimates.get)
    for row in cal.PUBLISHED:
        assert sorted(row.latency_ms, key=row.latency_ms.get) == order, row.key


@needs_cortex_m
@pytest.mark.slow
def test_a_board_at_another_clock_is_scaled_by_clock(cnn_int8: Path, capsys):
    """The same model on two Cortex-M4F boards, one at its YAML's 64 MHz and one at a
    clock set on the command line (``target.clock_mhz=168``): the same emulated count,
    the estimates in the ratio of the clocks, each instructions × CPI ÷ clock. Exit 0:
    it runs and fits."""
    code, out, err = _cli(capsys, cnn_int8, "target=nano33_ble_sense", "--json")
    assert code == 0, err
    assert out[0].startswith(
        "cnn_int8.tflite on nano33_ble_sense (cortex-m4f @ 64 MHz): runs on tflite_micro and "
        "fits; estimated "
    )
    at_64 = _json_metrics(out)
    code, out, err = _cli(capsys, cnn_int8, "target=cortex_m4", "target.clock_mhz=168", "--json")
    assert code == 0, err
    assert out[0].startswith("cnn_int8.tflite on cortex_m4 (cortex-m4f @ 168 MHz): runs on")
    at_168 = _json_metrics(out)
    assert at_64["mcu_instructions"] == at_168["mcu_instructions"] > 0
    assert at_168["mcu_est_latency_ms"] == pytest.approx(at_64["mcu_est_latency_ms"] * 64 / 168)
    cpi = BOARDS["cortex_m4"].cycles_per_instruction
    assert at_168["mcu_est_latency_ms"] == pytest.approx(at_168["mcu_instructions"] * cpi / 168e3)
    assert f"CPI {cpi:.3f} ÷ 168 MHz" in "\n".join(out)


def test_mlflow_records_one_top_level_run_and_says_how_to_browse_it(
    cnn_int8: Path, isolated: Path, capsys
):
    """``--mlflow`` on a model that runs and fits (exit 0), without the board's build
    (``target.emulate=false``, so on any machine): one top-level run with the target's
    settings, the figures printed, the model and profile.json; the last line is the
    command that opens the store in the MLflow UI."""
    from mlflow.tracking import MlflowClient

    code, out, err = _cli(
        capsys, cnn_int8, "target=cortex_m4", "target.clock_mhz=168", "target.emulate=false",
        "--mlflow", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert out[0].startswith("cnn_int8.tflite on cortex_m4 (cortex-m4f @ 168 MHz): runs on")
    assert any("not emulated: target.emulate=false for cortex_m4" in line for line in out)
    store = f"sqlite:///{isolated / 'outputs' / 'mlflow.db'}"
    client = MlflowClient(store)
    [run] = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run.data.tags["sweep.role"] == "profile" and "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["target.clock_mhz"] == "168"
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
def test_kws_profile_on_cortex_m4_matches_the_calibration_and_is_recorded(isolated: Path, capsys):
    """The full command on the keyword-spotting model: the emulated count is the one the
    calibration was fitted on, the estimate is in the band, and --mlflow records one
    top-level run."""
    from mlflow.tracking import MlflowClient

    bundle = isolated / "bundle"
    code, out, err = _cli(
        capsys, MLPERF_TINY / cal.MODELS["kws"], "target=cortex_m4", "--mlflow", "--bundle", bundle
    )
    assert code == 0, err
    assert out[0].startswith(
        "kws_ref_model.tflite on cortex_m4 (cortex-m4f @ 120 MHz): runs on tflite_micro and "
        "fits; estimated 100.1 ms and 4,156 µJ per inference"
    )
    text = "\n".join(out)
    count = cal.EMULATED_INSTRUCTIONS["cortex-m4f"]["kws"]
    assert f"{count:,} per inference (emulated; outputs equal tflite-micro's)" in text
    assert "CPI 1.561 ÷ 120 MHz" in text
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
    assert run.data.metrics["mcu_instructions"] == count
    assert run.data.metrics["mcu_emulated_parity_ok"] == 1.0
    assert "mcu_accuracy" not in run.data.metrics
    latency = run.data.metrics["mcu_est_latency_ms"]
    fast, slow = cal.ROWS[cal.CALIBRATION_ROW], cal.ROWS[cal.UPPER_ROW]
    assert fast.latency_ms["kws"] * (1 - WIDEN) <= latency <= slow.latency_ms["kws"] * (1 + WIDEN)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"kws_ref_model.tflite", "profile.json", "bundle"} <= artifacts
