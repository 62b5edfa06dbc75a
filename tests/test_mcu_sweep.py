"""A sweep over all quantizers for a microcontroller, checked against tflite-micro directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.config import tflm_invokes
from helpers.sweeps import run_sweep, runs_by_role, store


@pytest.mark.slow
def test_microcontroller_sweep_ranks_only_what_runs_and_fits(tmp_path: Path) -> None:
    result = run_sweep(
        tmp_path, "target=nano33_ble_sense", "quantize=none,dynamic_range,float16,int8"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    _, children = runs_by_role(tmp_path)
    by_quantizer = {c.data.tags["sequence.quantize"]: c for c in children}
    assert set(by_quantizer) == {"none", "dynamic_range", "float16", "int8"}
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

    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    assert ranking["target"] == "nano33_ble_sense"
    assert {e["sequence"].split("→ ")[1] for e in ranking["excluded"]} == {
        "dynamic_range",
        "float16",
    }
    assert all("does not run on tflite-micro" in e["reason"] for e in ranking["excluded"])
    for winner in ranking["winners"]["mnist"].values():
        assert winner["components"]["quantize"] in ("none", "int8")
        assert winner["metrics"]["fits_target"]["mean"] == 1
    assert (
        "runs and fits nano33_ble_sense"
        in (tmp_path / "outputs" / "sweep" / "ranking.md").read_text()
    )
