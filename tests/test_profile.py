"""sweep-profile on any .tflite, and the per-CPU calibration of the board estimates.

Real tools throughout: Hydra composes the target from conf/, tflite-micro probes the
model, the GNU Arm toolchain builds TFLM + CMSIS-NN for the Cortex-M4F and Unicorn
emulates it (the slow tests). The MLPerf Tiny reference models live outside the
repository (``<project>/../shared/mlperf_tiny`` or ``$SWEEP_MLPERF_TINY``); the tests
that need them skip, saying so, when they are absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.config import ROOT, compose

from sweep.cli.sweep_profile import main
from sweep.runtimes.cortex_m import calibration as cal

MLPERF = Path(os.environ.get("SWEEP_MLPERF_TINY", ROOT.parent / "shared" / "mlperf_tiny"))
WIDEN = 0.25  # the published band, widened by 25 % on each side
def _boards() -> dict:
    """Every board of conf/target, composed with its CPU's base and instantiated."""
    from sweep.pipeline.components import instantiate_group

    names = [p.stem for p in (ROOT / "conf" / "target").glob("*.yaml") if p.stem[0] != "_"]
    targets = {n: instantiate_group("target", compose([f"target={n}"]).target)[0] for n in names}
    return {n: t for n, t in targets.items() if t.is_microcontroller}


BOARDS = _boards()
EMULATED_BOARDS = {n: b for n, b in BOARDS.items() if b.cpu in cal.EMULATED_CPUS}


@pytest.fixture(scope="module")
def mlperf() -> Path:
    if not all((MLPERF / f).exists() for f in cal.MODELS.values()):
        pytest.skip(
            f"MLPerf Tiny reference models not found in {MLPERF}: put ../shared/mlperf_tiny "
            "beside the project or set SWEEP_MLPERF_TINY"
        )
    return MLPERF


def _cli(capsys, *args: str | Path) -> tuple[int, list[str], list[str]]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


# ------------------------------------------------------------------ the three bad inputs


def test_garbage_file_gives_one_line_and_status_2(tmp_path: Path):
    """The installed command, as a user runs it: one line on stderr, no traceback."""
    junk = tmp_path / "model.tflite"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli.sweep_profile", str(junk), "target=nano33_ble_sense"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: {junk} is not a TFLite model (no 'TFL3' flatbuffer identifier at "
                     "bytes 4-8; 4096 bytes)"]  # fmt: skip


def test_damaged_tflite_gives_one_line(tmp_path: Path, capsys, mlperf: Path):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes((mlperf / cal.MODELS["kws"]).read_bytes()[:20000])
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
def test_bad_target_settings_give_the_sweeps_one_line(override: str, capsys, mlperf: Path):
    from sweep.pipeline.components import instantiate_components
    from sweep.settings import ConfigError

    with pytest.raises(ConfigError) as sweep_says:
        instantiate_components(compose(["target=cortex_m4", override]))
    code, out, err = _cli(capsys, mlperf / cal.MODELS["kws"], "target=cortex_m4", override)
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
def test_missing_or_unknown_board_gives_one_line(overrides, says, capsys, mlperf: Path):
    code, out, err = _cli(capsys, mlperf / cal.MODELS["kws"], *overrides)
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


def test_estimates_fall_in_the_published_band_also_for_unseen_models():
    """Cortex-M4F @ 120 MHz: each estimate, and each leave-one-out prediction (CPI fitted
    on the other model alone), inside microTVM + CMSIS-NN .. TFLM 2.3.1 + CMSIS-NN widened
    by 25 %; the estimates order the models as every published row does."""
    counts = cal.EMULATED_INSTRUCTIONS["cortex-m4f"]
    fast, slow = cal.ROWS[cal.CALIBRATION_ROW], cal.ROWS[cal.UPPER_ROW]
    cpi = BOARDS["cortex_m4"].cycles_per_instruction
    assert BOARDS["cortex_m4"].clock_mhz == fast.clock_mhz == slow.clock_mhz == 120
    estimates = {}
    for model in cal.MODELS:
        low, high = fast.latency_ms[model] * (1 - WIDEN), slow.latency_ms[model] * (1 + WIDEN)
        estimates[model] = cal.estimate_ms(counts[model], cpi, 120)
        (other,) = set(cal.MODELS) - {model}
        unseen = cal.estimate_ms(counts[model], cal.fit_cpi(fast, counts, (other,)), 120)
        assert low <= estimates[model] <= high
        assert low <= unseen <= high
        assert abs(unseen / fast.latency_ms[model] - 1) < 0.02
    order = sorted(estimates, key=estimates.get)
    for row in cal.PUBLISHED:
        assert sorted(row.latency_ms, key=row.latency_ms.get) == order, row.key
    calibration = cal.calibrate("cortex-m4f")
    assert max(abs(e) for e in calibration.leave_one_out_pct.values()) < 2.0
    assert calibration.band_cpi[0] < calibration.band_cpi[1]


def test_a_board_at_another_clock_is_scaled_by_clock():
    counts = cal.EMULATED_INSTRUCTIONS["cortex-m4f"]
    nano, m4 = BOARDS["nano33_ble_sense"], BOARDS["cortex_m4"]
    assert nano.cycles_per_instruction == m4.cycles_per_instruction
    for model in cal.MODELS:
        at_64 = cal.estimate_ms(counts[model], nano.cycles_per_instruction, nano.clock_mhz)
        at_120 = cal.estimate_ms(counts[model], m4.cycles_per_instruction, m4.clock_mhz)
        assert at_64 == pytest.approx(at_120 * 120 / 64)


# ------------------------------------------------------------------ emulated


@pytest.mark.slow
def test_kws_profile_on_cortex_m4_matches_the_calibration_and_is_recorded(
    mlperf: Path, isolated: Path, capsys
):
    """The full command on the keyword-spotting model: the emulated count is the one the
    calibration was fitted on, the estimate is in the band, and --mlflow records one
    top-level run."""
    from mlflow.tracking import MlflowClient

    bundle = isolated / "bundle"
    code, out, err = _cli(
        capsys, mlperf / cal.MODELS["kws"], "target=cortex_m4", "--mlflow", "--bundle", bundle
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
