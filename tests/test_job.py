"""One job called as a function, recorded in a real MLflow store under tmp_path."""

from __future__ import annotations

import json

import pytest
from helpers.config import compose
from mlflow.tracking import MlflowClient

from sweep.pipeline.job import run
from sweep.stores.paths import default_tracking_uri

# The metrics every run records (documented in the README).
DOCUMENTED_METRICS = {
    "tflite_bytes",
    "tflite_gzip_bytes",
    "keras_bytes",
    "param_count",
    "nonzero_weights",
    "sparsity",
    "keras_accuracy",
    "tflite_accuracy",
    "test_examples",
    "latency_median_us",
    "latency_p10_us",
    "latency_p90_us",
    "latency_windows",
    "latency_threads",
    "latency_invokes_per_window",
    "test_set_seconds",
    "train_seconds",
    "pretrain_seconds",
    "convert_seconds",
    "train_cache_hit",
    "pretrain_cache_hit",
}
QUICK = [
    "dataset.train_limit=1500",
    "dataset.test_limit=500",
    "train.epochs=1",
    "measure.windows=3",
    "measure.window_ms=2",
    "measure.warmup_ms=5",
]


@pytest.fixture
def client(isolated) -> MlflowClient:
    return MlflowClient(tracking_uri=default_tracking_uri())


def test_job_records_one_finished_run_with_metrics_and_artifacts(isolated, client) -> None:
    outcome = run(compose([*QUICK, "quantize=int8"]), out_dir=isolated / "job")
    stored = client.get_run(outcome.run_id)
    assert stored.info.status == "FINISHED"
    assert set(stored.data.metrics) >= DOCUMENTED_METRICS
    assert stored.data.metrics == pytest.approx(outcome.metrics)
    assert stored.data.tags["sequence"] == "mnist · cnn · fit · none → int8"
    assert stored.data.params["train.epochs"] == "1"
    assert stored.data.params["quantize.calibration_samples"] == "200"
    assert "version.tensorflow" in stored.data.tags
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"model.tflite", "config.yaml", "metrics.json", "predictions.npy"} <= artifacts
    tflite = (isolated / "job" / "model.tflite").read_bytes()
    assert stored.data.metrics["tflite_bytes"] == len(tflite)
    assert json.loads((isolated / "job" / "metrics.json").read_text())["tflite_bytes"] == len(
        tflite
    )
    assert stored.data.metrics["test_examples"] == 500
    assert 0.7 < stored.data.metrics["tflite_accuracy"] <= 1


def test_second_quantizer_reuses_the_trained_model(isolated, client) -> None:
    first = run(compose([*QUICK, "quantize=none"]))
    second = run(compose([*QUICK, "quantize=float16"]))
    assert first.metrics["train_cache_hit"] == 0
    assert second.metrics["train_cache_hit"] == 1
    assert second.metrics["train_seconds"] == first.metrics["train_seconds"]
    assert second.metrics["keras_accuracy"] == first.metrics["keras_accuracy"]
    assert second.metrics["tflite_bytes"] < 0.6 * first.metrics["tflite_bytes"]


def test_failing_job_is_recorded_as_failed_with_its_error(isolated, client) -> None:
    # A pooling window larger than the feature map: the model cannot be built.
    with pytest.raises(Exception, match="pool") as raised:
        run(compose([*QUICK, "model.pool_size=30"]))
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert type(raised.value).__name__ in runs[0].data.tags["error"]


def test_bad_setting_leaves_no_run_behind(isolated) -> None:
    from sweep.settings import ConfigError

    with pytest.raises(ConfigError):
        run(compose([*QUICK, "train.epochs=0"]))
    assert not (isolated / "outputs" / "mlflow.db").exists()


def test_the_default_store_is_absolute_whatever_the_working_directory(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every job, the ranking and ``mlflow ui`` must find one store: with ``tracking.uri``
    unset it is ``<project>/outputs/mlflow.db`` as an absolute path, and Hydra's folders lie
    beside it, wherever the command was started. A relative ``SWEEP_OUTPUTS`` is read from
    where the command starts, and made absolute there."""
    from helpers.config import ROOT

    from sweep.stores.paths import resolve_tracking_uri

    monkeypatch.delenv("SWEEP_OUTPUTS", raising=False)
    store = f"sqlite:///{ROOT / 'outputs' / 'mlflow.db'}"
    for where in (ROOT, ROOT / "tests", tmp_path):
        monkeypatch.chdir(where)
        cfg = compose([], with_hydra=True)
        assert cfg.tracking.uri is None
        assert resolve_tracking_uri(cfg.tracking.uri) == default_tracking_uri() == store
        assert cfg.hydra.run.dir.startswith(f"{ROOT / 'outputs' / 'runs'}/")
        assert cfg.hydra.sweep.dir.startswith(f"{ROOT / 'outputs' / 'multirun'}/")
    monkeypatch.setenv("SWEEP_OUTPUTS", "relative-outputs")
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'relative-outputs' / 'mlflow.db'}"
