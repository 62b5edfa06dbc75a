"""Microcontroller checks against the real runtimes (tflite-micro, LiteRT), no mocks.

The project's CNN is trained on the MNIST fixture and converted by its four
quantizers once per session (tests/conftest.py); every test asks the real runtimes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.config import QUANTIZERS, tflm_invokes

from sweep.checks import Measurement, ModelUnderTest
from sweep.groups.target import Host, Microcontroller
from sweep.runtimes import tflm as mcu
from sweep.runtimes.bundle import resolver_method, write_bundle
from sweep.runtimes.litert import predict_tflite
from sweep.settings import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(converted: dict[str, bytes], mnist_small) -> dict:
    """The project's conversions of one trained CNN, each probed by tflite-micro."""
    x_test, y_test = mnist_small.x_test, mnist_small.y_test
    reports = {kind: mcu.probe(converted[kind], x_test, y_test) for kind in QUANTIZERS}
    return {"models": converted, "reports": reports, "x": x_test, "y": y_test}


def _measure(board, model: bytes, x, y, desktop_accuracy, out_dir: Path) -> Measurement:
    """The board's checks on one model, as a sweep's job runs them."""
    return board.measure(ModelUnderTest(model, x, y, out_dir, desktop_accuracy))


def _litert_accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    predictions, _ = predict_tflite(model, x)
    return float(np.mean(predictions == y))


@pytest.mark.parametrize("kind", ["none", "int8", "int8_fallback", "int16x8"])
def test_float32_and_int8_run_on_tflite_micro(setup: dict, kind: str) -> None:
    report = setup["reports"][kind]
    assert report.runs and report.reason == ""
    assert report.accuracy is not None and report.accuracy > 0.7
    assert report.n_images == len(setup["y"])
    assert report.latency_median_us is not None and report.latency_median_us > 0
    assert report.eval_us_per_image is not None and report.eval_us_per_image > 0


@pytest.mark.parametrize(
    ("kind", "complaint"),
    [("dynamic_range", "with filter type: INT8 not supported"), ("float16", "DEQUANTIZE")],
)
def test_dynamic_range_and_float16_are_refused_with_the_runtimes_reason(
    setup: dict, kind: str, complaint: str
) -> None:
    report = setup["reports"][kind]
    assert not report.runs
    assert complaint in report.reason
    assert "failed to prepare" in report.reason
    assert report.arena_bytes is None and report.accuracy is None


def test_a_model_that_crashes_tflite_micro_does_not_run_and_the_job_goes_on(
    setup: dict, tmp_path: Path
) -> None:
    """A real searched model (separable, 4 filters, QAT, int8) on which tflite-micro's host
    build dies with SIGSEGV: the crash is one model's verdict, not the end of the sweep."""
    crashing = (ROOT / "tests" / "data" / "tflm_segfault.tflite").read_bytes()
    board = Microcontroller(name="big", flash_kb=1024, ram_kb=256, cpu="cortex-m4f", clock_mhz=64)
    result = _measure(board, crashing, setup["x"], setup["y"], 0.9, tmp_path)
    assert result.metrics["mcu_runs"] == 0 and result.metrics["fits_target"] == 0
    assert "tflite-micro crashed on this model (killed by SIGSEGV)" in result.tags["mcu_reason"]
    assert not (tmp_path / "bundle").exists()  # nothing to build for the board
    again = mcu.probe(setup["models"]["int8"], setup["x"], setup["y"])  # this process goes on
    assert again.runs and again.accuracy == setup["reports"]["int8"].accuracy


def test_an_isolated_call_raises_the_childs_exception_here() -> None:
    from sweep.runtimes.isolated import call_isolated

    assert call_isolated(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        call_isolated(divmod, 1, 0)


def test_an_isolated_call_works_inside_a_joblib_worker() -> None:
    """``hydra/launcher=joblib`` runs jobs in loky workers, whose start method is "loky":
    the isolated child must still start there (every tflite-micro check goes through it)."""
    from joblib import Parallel, delayed

    from sweep.runtimes.isolated import call_isolated

    answers = Parallel(n_jobs=2, backend="loky")(
        delayed(call_isolated)(divmod, n, 2) for n in (7, 9)
    )
    assert answers == [(3, 1), (4, 1)]


@pytest.mark.parametrize("kind", ["none", "int8", "int8_fallback", "int16x8"])
def test_arena_is_minimal(setup: dict, kind: str) -> None:
    model, arena = setup["models"][kind], setup["reports"][kind].arena_bytes
    assert arena is not None
    assert tflm_invokes(model, arena)
    assert not tflm_invokes(model, arena - 16)
    assert not tflm_invokes(model, arena - mcu.ARENA_GRANULARITY_BYTES)
    # The interpreter's own account (RecordingMicroAllocator) agrees, to its 16-byte
    # alignment of the tail (the search finds the exact byte; int8_fallback: 8 bytes less).
    assert 0 <= setup["reports"][kind].arena_reported_bytes - arena < 16


def test_int8_needs_a_smaller_arena_than_float32(setup: dict) -> None:
    assert setup["reports"]["int8"].arena_bytes < setup["reports"]["none"].arena_bytes


@pytest.mark.parametrize("kind", ["none", "int8", "int8_fallback", "int16x8"])
def test_mcu_accuracy_matches_litert(setup: dict, kind: str) -> None:
    desktop = _litert_accuracy(setup["models"][kind], setup["x"], setup["y"])
    assert mcu.parity(desktop, setup["reports"][kind].accuracy, tolerance_pp=0.5)
    assert not mcu.parity(0.9, 0.8)


def test_bundle_holds_the_exact_model(setup: dict, tmp_path: Path) -> None:
    model, arena = setup["models"]["int8"], setup["reports"]["int8"].arena_bytes
    paths = write_bundle(model, tmp_path, arena_bytes=arena)
    assert {p.name for p in paths} == {
        "model_data.h",
        "model_data.cc",
        "operators.txt",
        "micro_op_resolver.h",
    }
    source = (tmp_path / "model_data.cc").read_text()
    header = (tmp_path / "model_data.h").read_text()
    body = re.search(r"g_model\[\] = \{(.*?)\};", source, re.S).group(1)
    assert bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body)) == model
    assert f"const unsigned int g_model_len = {len(model)};" in source
    assert "alignas(16) const unsigned char g_model[]" in source
    assert f"kTensorArenaSize = {arena};" in header

    ops = (tmp_path / "operators.txt").read_text().split()
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "RESHAPE"} <= set(ops)
    resolver = (tmp_path / "micro_op_resolver.h").read_text()
    assert "resolver.AddConv2D()" in resolver and "resolver.AddMaxPool2D()" in resolver
    assert "MicroMutableOpResolver<kNumModelOps>" in resolver and f"= {len(ops)};" in resolver


@pytest.mark.needs("host_compilers")
def test_bundle_compiles_as_c_and_cpp(setup: dict, tmp_path: Path) -> None:
    """Strict C11 and C++11 compilers take the bundle, and a C program links against the
    C++-compiled array (extern "C")."""
    model, arena = setup["models"]["int8"], setup["reports"]["int8"].arena_bytes
    write_bundle(model, tmp_path, arena_bytes=arena)
    main = tmp_path / "main.c"
    main.write_text(
        '#include "model_data.h"\nint main(void) {\n'
        f"  return (g_model_len == {len(model)}u && kTensorArenaSize == {arena}) ? 0 : 1;\n}}\n"
    )
    flags = ["-Wall", "-Wextra", "-pedantic", "-Werror", "-c"]
    for compiler, lang in (("gcc", ["-std=c11", "-x", "c"]), ("g++", ["-std=c++11"])):
        obj = tmp_path / f"model_{compiler}.o"
        cmd = [compiler, *lang, *flags, "model_data.cc", "-o", str(obj)]
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    exe = tmp_path / "main"
    subprocess.run(
        ["gcc", "-std=c11", str(main), str(tmp_path / "model_g++.o"), "-o", str(exe)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    assert subprocess.run([str(exe)]).returncode == 0


def test_resolver_method_names() -> None:
    assert resolver_method("CONV_2D") == "AddConv2D"
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_method("BATCH_TO_SPACE_ND") == "AddBatchToSpaceNd"
    assert resolver_method("UNIDIRECTIONAL_SEQUENCE_LSTM") == "AddUnidirectionalSequenceLSTM"


def test_fits() -> None:
    assert mcu.fits(24_000, 12_000, 1024 * 1024, 256 * 1024) == (True, "")
    ok, why = mcu.fits(24_000, 12_000, 16 * 1024, 8 * 1024)
    assert not ok and "flash" in why and "RAM" in why


def test_microcontroller_metrics(setup: dict, tmp_path: Path) -> None:
    board = Microcontroller(name="tiny", flash_kb=16, ram_kb=8, cpu="cortex-m4f", clock_mhz=64)
    x, y = setup["x"][:200], setup["y"][:200]
    result = _measure(board, setup["models"]["int8"], x, y, None, tmp_path / "tiny")
    assert isinstance(result, Measurement)
    m = result.metrics
    assert m["mcu_runs"] == 1.0 and m["fits_target"] == 0.0 and m["fits_flash"] == 0.0
    assert m["arena_bytes"] == m["ram_bytes_needed"] == setup["reports"]["int8"].arena_bytes
    assert m["flash_bytes_needed"] == len(setup["models"]["int8"])
    assert "mcu_parity_ok" not in m and "flash" in result.tags["mcu_fit_reason"]

    big = Microcontroller(
        name="big", flash_kb=1024, ram_kb=256, cpu="cortex-m4f", clock_mhz=64, emulate=False
    )
    result = _measure(big, setup["models"]["int8"], x, y, m["mcu_accuracy"], tmp_path / "big")
    assert result.metrics["fits_target"] == 1.0 and result.metrics["mcu_parity_ok"] == 1.0
    assert {k: v for k, v in result.tags.items() if k.startswith(("mcu", "exclusion"))} == {}
    refused = _measure(big, setup["models"]["dynamic_range"], x, y, 0.9, tmp_path / "b")
    assert refused.metrics["mcu_runs"] == 0.0 and refused.metrics["fits_target"] == 0.0
    assert "not supported" in refused.tags["mcu_reason"]
    assert not (tmp_path / "b" / "bundle").exists()  # no bundle for a model the board cannot run

    on_host = ModelUnderTest(setup["models"]["int8"], x, y, tmp_path, 0.9)
    assert Host().measure(on_host).metrics == {}
    assert not Host().is_microcontroller and big.is_microcontroller


def test_without_micro_accuracy_the_board_figures_stay_and_only_the_accuracy_goes(
    setup: dict, tmp_path: Path
) -> None:
    """``target.micro_accuracy=false`` (a search's rung 0): tflite-micro runs the first
    ``emulate_images`` images only; whether the model runs, its arena, the fit and the host
    timing are the same figures, tflite-micro's accuracy and the parity figures are left out."""
    board = dict(name="big", flash_kb=1024, ram_kb=256, cpu="cortex-m4f", clock_mhz=64,
                 emulate=False, emulate_images=3, latency_repeats=1)  # fmt: skip
    x, y, model = setup["x"][:200], setup["y"][:200], setup["models"]["int8"]
    full = _measure(Microcontroller(**board), model, x, y, 0.9, tmp_path / "full").metrics
    quick = _measure(
        Microcontroller(**board, micro_accuracy=False), model, x, y, 0.9, tmp_path / "quick"
    ).metrics
    accuracy = {"mcu_accuracy", "mcu_accuracy_gap_pp", "mcu_parity_ok", "mcu_eval_us_per_image"}
    assert accuracy <= set(full) and not accuracy & set(quick)
    exact = {k: v for k, v in full.items() if k not in accuracy | {"mcu_latency_median_us"}}
    assert {k: quick[k] for k in exact} == exact  # runs, arena, fit: the same
    assert quick["mcu_latency_median_us"] > 0


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"flash_kb": 0}, "target.flash_kb"),
        ({"ram_kb": -5}, "target.ram_kb"),
        ({"checks": ["tvm"]}, "target.checks"),
        ({"checks": ["cortex_m"]}, "target.checks"),
        ({"name": ""}, "target.name"),
        ({"cpu": "z80"}, "target.cpu"),
        ({"clock_mhz": 0}, "target.clock_mhz"),
    ],
)
def test_microcontroller_validation(kwargs: dict, setting: str) -> None:
    args = {"name": "b", "flash_kb": 1024, "ram_kb": 256, "cpu": "cortex-m4f", "clock_mhz": 64}
    args.update(kwargs)
    with pytest.raises(ValueError, match=setting.replace(".", r"\.")) as err:
        build("target", Microcontroller, args)
    if setting == "target.checks":
        assert "tflite_micro" in str(err.value)


TARGET_CONFIGS = sorted(
    p for p in (ROOT / "conf" / "target").glob("*.yaml") if not p.stem.startswith("_")
)


@pytest.mark.parametrize("path", TARGET_CONFIGS, ids=lambda p: p.stem)
def test_target_configs_are_valid_and_agree_with_the_cpu_table(path: Path) -> None:
    """Every board, composed with its CPU's base as Hydra composes it, passes the settings
    check, names a CPU of the table, and an emulated board names where its power figure
    comes from, if it states one (its cycles come from the core's cycle model, in code)."""
    from helpers.config import compose

    from sweep.pipeline.components import instantiate_group
    from sweep.runtimes import cortex_m

    target, _ = instantiate_group("target", compose([f"target={path.stem}"]).target)
    assert target.name == path.stem
    if target.is_microcontroller:
        spec = cortex_m.cpu_spec(target.cpu)
        if spec.emulated:
            assert target.cpi is None
            assert target.active_power_mw is None or target.power_source


def test_esp32_is_checked_on_tflite_micro_and_says_why_it_is_not_emulated(
    setup: dict, tmp_path: Path
) -> None:
    """An Xtensa board composed from its YAML: tflite-micro's figures, no Cortex-M build,
    and the tag ``mcu_emulation_reason`` says why (the README's promise for ESP32)."""
    from helpers.config import composed_target

    esp32 = composed_target("esp32")
    x, y = setup["x"][:200], setup["y"][:200]
    found = esp32.measure(ModelUnderTest(setup["models"]["int8"], x, y, tmp_path))
    assert found.metrics["mcu_runs"] == 1 and found.metrics["fits_target"] == 1
    assert found.metrics["mcu_emulated"] == 0
    assert not {"mcu_instructions", "mcu_est_latency_ms"} & set(found.metrics)
    reason = found.tags["mcu_emulation_reason"]
    assert "not emulated" in reason and "Xtensa" in reason
