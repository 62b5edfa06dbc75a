"""A sweep over all quantizers for a microcontroller, checked against tflite-micro directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.config import composed_target, tflm_invokes
from helpers.sweeps import run_sweep, runs_by_role, seed_store, store
from helpers.system import needs_cortex_m


def _first_test_image_as_the_model_takes_it(model: bytes, mnist) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    from sweep.runtimes.tensors import to_model_input

    detail = runtime.Interpreter.from_bytes(model).get_input_details(0)
    q = detail["quantization_parameters"]
    return to_model_input(
        mnist.x_test[:1], detail["shape"][1:], detail["dtype"], float(q["scales"][0]),
        int(q["zero_points"][0]),
    )  # fmt: skip


@needs_cortex_m
@pytest.mark.slow
def test_microcontroller_sweep_ranks_only_what_runs_and_fits(tmp_path: Path, mnist_small) -> None:
    seed_store(tmp_path)
    result = run_sweep(
        tmp_path, "target=nano33_ble_sense", "quantize=none,dynamic_range,float16,int8,int16x8"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    _, children = runs_by_role(tmp_path)
    by_quantizer = {c.data.tags["sequence.quantize"]: c for c in children}
    assert set(by_quantizer) == {"none", "dynamic_range", "float16", "int8", "int16x8"}
    client, _ = store(tmp_path)

    for name in ("dynamic_range", "float16"):
        run = by_quantizer[name]
        assert run.data.metrics["mcu_runs"] == 0 and run.data.metrics["fits_target"] == 0
        assert "failed to prepare" in run.data.tags["mcu_reason"]
        assert "arena_bytes" not in run.data.metrics
        assert not [a for a in client.list_artifacts(run.info.run_id) if a.path == "bundle"]

    for name in ("none", "int8"):
        run = by_quantizer[name]
        metrics = run.data.metrics
        assert metrics["mcu_runs"] == 1 and metrics["fits_target"] == 1
        assert metrics["mcu_parity_ok"] == 1
        model_path = client.download_artifacts(
            run.info.run_id, "model.tflite", str(tmp_path / name)
        )
        model = Path(model_path).read_bytes()
        arena = int(metrics["arena_bytes"])
        assert metrics["flash_bytes_needed"] == len(model)
        assert tflm_invokes(model, arena) and not tflm_invokes(model, arena - 16)
        bundle = client.download_artifacts(run.info.run_id, "bundle", str(tmp_path / name))
        source = (Path(bundle) / "model_data.cc").read_text()
        assert f"g_model_len = {len(model)}" in source
        assert f"kTensorArenaSize = {arena}" in (Path(bundle) / "model_data.h").read_text()
    assert (
        by_quantizer["int8"].data.metrics["arena_bytes"]
        < by_quantizer["none"].data.metrics["arena_bytes"]
    )

    # The board: each bundle built for the nRF52840's Cortex-M4F with TFLM + CMSIS-NN and
    # run in the emulator; its predictions equal tflite-micro's, int8 needs fewer
    # instructions than float32, and the estimates follow from the board's own figures.
    board = {name: by_quantizer[name].data.metrics for name in ("none", "int8")}
    nano33 = composed_target("nano33_ble_sense")  # composed with its CPU's base, as the sweep did
    for metrics in board.values():
        assert metrics["mcu_emulated"] == 1 and metrics["mcu_emulated_parity_ok"] == 1
        assert metrics["firmware_ram_bytes"] >= metrics["arena_bytes"]
        assert metrics["firmware_flash_bytes"] > metrics["flash_bytes_needed"]
        assert metrics["mcu_est_latency_ms"] == pytest.approx(
            metrics["mcu_est_cycles"] / (nano33.clock_mhz * 1e3)
        )
        assert metrics["mcu_est_energy_uj"] == pytest.approx(
            metrics["mcu_est_latency_ms"] * nano33.active_power_mw
        )
    assert board["int8"]["mcu_instructions"] < board["none"]["mcu_instructions"]
    # CMSIS-NN has no per-channel int16 fully-connected kernel: the host's reference build
    # runs int16x8, the board's does not, and the ranking says so.
    int16 = by_quantizer["int16x8"].data
    assert int16.metrics["mcu_runs"] == 1 and int16.metrics["mcu_emulated_parity_ok"] == 0
    assert "fully_connected" in int16.tags["mcu_emulation_reason"]

    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    assert ranking["target"] == "nano33_ble_sense"
    excluded = {e["sequence"].split("→ ")[1]: e["reason"] for e in ranking["excluded"]}
    assert set(excluded) == {"dynamic_range", "float16", "int16x8"}
    assert "does not run on tflite-micro" in excluded["float16"]
    assert "Cortex-M build" in excluded["int16x8"]
    winners = ranking["winners"]["mnist"]
    for winner in winners.values():
        assert winner["components"]["quantize"] in ("none", "int8")
        assert winner["metrics"]["fits_target"]["mean"] == 1
    # The board's objectives: smallest by the flash the model needs, fastest by the board
    # estimate, least RAM by the arena, each the best stored value among the runs that run
    # and fit.
    assert winners["smallest"]["metric"] == "flash_bytes_needed"
    assert winners["fastest"]["metric"] == "mcu_est_latency_ms"
    assert winners["least_ram"]["metric"] == "ram_bytes_needed"
    for objective, metric in (
        ("smallest", "flash_bytes_needed"),
        ("fastest", "mcu_est_latency_ms"),
        ("least_ram", "ram_bytes_needed"),
    ):
        best = min(board[q][metric] for q in board)
        assert winners[objective]["metrics"][metric]["mean"] == best

    # The stored int8 bundle, built and emulated again here on the sweep's first test image:
    # exactly the instructions the sweep recorded (no cache in between).
    from sweep.runtimes.cortex_m import emulate

    model = (tmp_path / "int8" / "model.tflite").read_bytes()  # downloaded above, with bundle/
    image = _first_test_image_as_the_model_takes_it(model, mnist_small)
    again = emulate(tmp_path / "int8" / "bundle", nano33.cpu, image)
    assert again.instructions == board["int8"]["mcu_instructions"]


@pytest.mark.slow
def test_without_the_arm_toolchain_the_sweep_finishes_with_one_clear_line(tmp_path: Path) -> None:
    result = run_sweep(
        tmp_path, "target=nano33_ble_sense", "quantize=int8", extra_env={"PATH": str(tmp_path)}
    )
    assert result.returncode == 0, result.stdout[-3000:]
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "apt-get install gcc-arm-none-eabi" in line]
    assert len(lines) == 1, lines
    _, children = runs_by_role(tmp_path)
    metrics = children[0].data.metrics
    assert metrics["mcu_runs"] == 1 and metrics["mcu_emulated"] == 0
    assert "mcu_instructions" not in metrics
    assert (
        "runs and fits nano33_ble_sense"
        in (tmp_path / "outputs" / "sweep" / "ranking.md").read_text()
    )
    # Without a board estimate, fastest falls back to tflite-micro's latency on this host.
    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    fastest = ranking["winners"]["mnist"]["fastest"]
    assert fastest["metric"] == "mcu_latency_median_us"
    assert fastest["metrics"]["mcu_latency_median_us"]["mean"] == (metrics["mcu_latency_median_us"])
