"""Results cached by content: a re-run pays only for latency, a damaged entry is rebuilt."""

from __future__ import annotations

from pathlib import Path

import helpers.sweeps
import pytest
from helpers.config import compose
from mlflow.tracking import MlflowClient

from sweep.metrics import METRICS, reproducible
from sweep.pipeline.job import run
from sweep.stores import memos
from sweep.stores.paths import default_tracking_uri, outputs_root

QUICK = [*helpers.sweeps.QUICK, "quantize=int8"]


def test_a_rerun_reuses_the_converted_model_and_times_latency_again(
    isolated: Path, tmp_path: Path
) -> None:
    cold = run(compose(QUICK), out_dir=tmp_path / "cold")
    warm = run(compose(QUICK), out_dir=tmp_path / "warm")
    assert cold.metrics["results_cache_hit"] == 0 and warm.metrics["results_cache_hit"] == 1
    assert reproducible(warm.metrics) == reproducible(cold.metrics)
    tflite = (tmp_path / "cold" / "model.tflite").read_bytes()
    assert (tmp_path / "warm" / "model.tflite").read_bytes() == tflite
    assert (tmp_path / "warm" / "predictions.npy").read_bytes() == (
        tmp_path / "cold" / "predictions.npy"
    ).read_bytes()
    assert "phase_convert_seconds" not in warm.metrics  # nothing was converted again
    assert warm.metrics["phase_latency_seconds"] > 0  # the one noisy figure is re-timed

    # measure.reuse_latency=true: the figures timed by the warm run, exactly, and the run
    # says so; the warm run timed its own.
    reused = run(compose([*QUICK, "measure.reuse_latency=true"]), out_dir=tmp_path / "reuse")
    timing = [m for m in warm.metrics if m.startswith("latency_")]
    assert {m: reused.metrics[m] for m in timing} == {m: warm.metrics[m] for m in timing}
    client = MlflowClient(default_tracking_uri())
    assert client.get_run(reused.run_id).data.tags["latency.reused"] == "true"
    assert "latency.reused" not in client.get_run(warm.run_id).data.tags


def test_a_sequence_converts_to_the_same_bytes_whichever_job_trained_its_model(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same sequence, its model trained in its own job (a sweep of it alone, a resumed
    sweep, another launcher's worker), or by the job before it in the same process (one
    job at a time): the same ``.tflite``. TFLite names tensors after Keras's names, which
    Keras numbers per process (``input_1``, ``input_2``); the number a job reached depended
    on the models it built itself, and shifted sizes by up to 32 B of the reference CNN's
    24 KB in int8 (23 of the paper grid's 120 sequences, between two launchers)."""
    pruning = compose([*QUICK, "pretrain=pruning"])
    alone = run(pruning, out_dir=tmp_path / "alone")  # trains, fine-tunes, converts

    monkeypatch.setenv("SWEEP_OUTPUTS", str(tmp_path / "elsewhere"))  # empty caches
    memos.reset()  # as when a new sweep starts
    run(compose([*QUICK, "pretrain=none"]), out_dir=tmp_path / "first")  # trains the model
    second = run(pruning, out_dir=tmp_path / "second")  # reads it, fine-tunes, converts
    hits = ("train_cache_hit", "pretrain_cache_hit", "results_cache_hit")
    assert [second.metrics[h] for h in hits] == [1, 0, 0]
    tflite = (tmp_path / "alone" / "model.tflite").read_bytes()
    assert (tmp_path / "second" / "model.tflite").read_bytes() == tflite
    assert reproducible(second.metrics) == reproducible(alone.metrics)


def test_cache_disabled_converts_trains_and_measures_everything_again(isolated: Path) -> None:
    """``cache.enabled=false``: nothing comes from the caches (trained models, results), even
    when a cached entry for the very same job exists; the figures are the same."""
    cached = run(compose(QUICK))
    uncached = run(compose([*QUICK, "cache.enabled=false"]))
    hits = ("train_cache_hit", "pretrain_cache_hit", "results_cache_hit")
    assert [uncached.metrics[h] for h in hits] == [0, 0, 0]
    assert "phase_convert_seconds" in uncached.metrics and "phase_train_seconds" in (
        uncached.metrics
    )
    assert reproducible(uncached.metrics) == reproducible(cached.metrics)
    assert run(compose(QUICK)).metrics["results_cache_hit"] == 1  # the cache is still there


def test_two_quantizers_with_default_settings_never_share_results(isolated: Path) -> None:
    none = run(compose([*QUICK, "quantize=none"]))
    float16 = run(compose([*QUICK, "quantize=float16"]))
    assert float16.metrics["results_cache_hit"] == 0
    assert float16.metrics["tflite_bytes"] < 0.6 * none.metrics["tflite_bytes"]


def test_a_damaged_results_entry_is_measured_again(
    isolated: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = run(compose(QUICK), out_dir=tmp_path / "a")
    entries = [p for p in (outputs_root() / "cache" / "results").iterdir() if p.is_dir()]
    entries = [p for p in entries if not p.name.startswith(".tmp")]
    assert len(entries) == 1
    (entries[0] / "model.tflite").write_bytes(b"planted")
    again = run(compose(QUICK), out_dir=tmp_path / "b")
    assert again.metrics["results_cache_hit"] == 0
    assert "damaged" in caplog.text
    assert (tmp_path / "b" / "model.tflite").read_bytes() != b"planted"
    # Converted again in this process (Keras numbers its layer names per process, so the
    # bytes may differ in a name), measured the same.
    assert reproducible(again.metrics) == reproducible(first.metrics)


def test_every_logged_metric_is_a_row_of_the_metrics_table(isolated: Path) -> None:
    outcome = run(compose([*QUICK, "target=nano33_ble_sense", "target.emulate=false"]))
    assert set(outcome.metrics) <= set(METRICS), set(outcome.metrics) - set(METRICS)
