"""The work of one sequence: train, pre-train, convert, measure. Only new work is done.

Training and pre-training come from the stage cache (:mod:`sweep.stores.stage_cache`), the
converted model and its deterministic results from the results cache
(:mod:`sweep.stores.result_cache`), and within one worker process the dataset is read once.
What a job spends goes into ``phase_*_seconds`` metrics, so a regression in any
phase shows in the store and in ``benchmarks/sweep_cost.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from sweep.groups.dataset import Dataset
from sweep.groups.model import input_shape_for, is_trained, objective_of, provenance_of
from sweep.groups.objective import DEFAULT as DEFAULT_OBJECTIVE
from sweep.groups.train import Trainer
from sweep.pipeline.components import Components
from sweep.pipeline.measurement import convert_and_measure, result_key
from sweep.runtimes.litert import LATENCY_METRICS, latency
from sweep.settings import ConfigError
from sweep.stores.fingerprints import code_fingerprint, digest
from sweep.stores.memos import sweep_dict
from sweep.stores.paths import outputs_root
from sweep.stores.result_cache import ResultCache
from sweep.stores.stage_cache import WEIGHTS_FILE, Stage, StageCache

log = logging.getLogger(__name__)

_DATASETS: dict[str, tuple[Dataset, str]] = sweep_dict()


def _loaded(parts: Components) -> tuple[Dataset, str]:
    """The dataset and its content fingerprint, read once per process and settings."""
    key = digest([type(parts.dataset).__qualname__, parts.settings["dataset"]])
    if key not in _DATASETS:
        data = parts.dataset.load()
        _DATASETS.clear()  # keep one dataset in memory: sweeps run dataset by dataset
        _DATASETS[key] = (data, data.fingerprint())
    return _DATASETS[key]


def fit_data_to_model(model: Any, train: Trainer, data: Dataset) -> Dataset:
    """The data as the model takes it; a UserError when the model cannot take it.

    Checked before any run is opened (by the job, and for a sweep by its callback): a model
    file whose input shape or class count does not match the data, or ``train=none`` with
    a builder of untrained networks. Images that differ from the model's input only by a
    channel axis of 1 (IDX's 28×28 for a 28×28×1 model) are reshaped.
    """
    if not train.trains and not is_trained(model):
        raise ConfigError(
            f"train={train.name} keeps a model's weights as they are, but model="
            f"{getattr(model, 'name', type(model).__name__)} builds an untrained network: "
            "use train=fit (or graph), or bring a trained model with model=keras_file "
            "model.path=<file>."
        )
    shape = input_shape_for(model, data.input_shape, data.num_classes)
    if shape == data.input_shape:
        return data
    return dataclasses.replace(
        data,
        x_train=data.x_train.reshape(len(data.x_train), *shape),
        x_test=data.x_test.reshape(len(data.x_test), *shape),
    )


def load_dataset(parts: Components) -> Dataset:
    """Read and check the job's data, and that its model takes it (a UserError stops the job
    before any run is opened): the data as the model takes it."""
    return fit_data_to_model(parts.model, parts.train, _loaded(parts)[0])


class Phases:
    """Wall time per phase of a job, logged as ``phase_<name>_seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        return {f"phase_{name}_seconds": s for name, s in self.seconds.items()}


def _seed(seed: int) -> None:
    from sweep.backend import keras

    keras.utils.set_random_seed(seed)


def _keras_accuracy(model, data: Dataset) -> float:
    logits = model.predict(data.x_test, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == data.y_test))


def _train_stages(
    parts: Components,
    data: Dataset,
    fingerprint: str,
    seed: int,
    cache: StageCache,
    phases: Phases,
) -> tuple[Stage, Stage]:
    """The trained model, then the pre-trained one: each cached by what determines it.

    The pre-trained model's Keras accuracy is measured when it is built and kept with
    it, so the quantizers that share it do not each run a prediction pass. A builder that
    brings trained weights (a model file) with ``train=none`` is not trained: its "trained"
    stage is those weights, and pre-training fine-tunes them with the model's own loss.
    """
    train_material = {
        "data": fingerprint,
        "model": parts.settings["model"],
        "train": parts.settings["train"],
        "seed": seed,
        "code": code_fingerprint(parts.model, parts.train),
    }
    if provenance := provenance_of(parts.model):  # e.g. the model file's checksum
        train_material["model_source"] = provenance
    trainer = parts.train.aimed_at(objective_of(parts.model))
    if trainer.objective is not DEFAULT_OBJECTIVE:
        log.info("training and fine-tuning fit %s", trainer.objective.description)

    def architecture():
        return parts.model.build(data.input_shape, data.num_classes)

    def train():
        _seed(seed)
        if not trainer.trains:
            started = time.perf_counter()
            model = architecture()
            log.info("train=%s: the model's weights as they are, not trained", trainer.name)
            return model, {"seconds": time.perf_counter() - started, "history": []}
        model = architecture()
        started = time.perf_counter()
        history = trainer.fit(model, data.x_train, data.y_train)
        return model, {"seconds": time.perf_counter() - started, "history": history}

    with phases("train"):
        trained = cache.get_or_build("train", train_material, train, architecture)

    def pretrain():
        _seed(seed)
        fresh = trained.fresh()  # pre-training must not alter the trained model
        started = time.perf_counter()
        model = parts.pretrain.apply(fresh, data.x_train, data.y_train, trainer)
        seconds = time.perf_counter() - started
        return model, {"seconds": seconds, "keras_accuracy": _keras_accuracy(model, data)}

    def wrapped_architecture():  # e.g. layers QAT keeps float, annotated as it did
        return parts.pretrain.annotate(architecture())

    with phases("pretrain"):
        pretrained = cache.get_or_build(
            "pretrain",
            {
                **train_material,
                "pretrain": parts.settings["pretrain"],
                "code": code_fingerprint(parts.model, parts.train, parts.pretrain),
            },
            pretrain,
            wrapped_architecture,
            scope=parts.pretrain.load_scope,
        )
    return trained, pretrained


def _weights_checksum(stage: Stage) -> str:
    """The stage entry's own checksum of its weights: the results cache's content key."""
    meta = json.loads((stage.path.parent / "meta.json").read_text())
    return str(meta["sha256"][WEIGHTS_FILE])


def _latency(
    parts: Components, data: Dataset, key: str, out_dir: Path, results: ResultCache
) -> tuple[dict[str, float], dict[str, str]]:
    """Desktop latency: timed again, unless ``measure.reuse_latency`` finds one from this host."""
    if parts.measure.reuse_latency and (kept := results.latency(key, LATENCY_METRICS)) is not None:
        return kept, {"latency.reused": "true"}
    tflite = (out_dir / "model.tflite").read_bytes()
    figures = latency(tflite, data.x_test[0], parts.measure)
    results.keep_latency(key, figures)
    return figures, {}


def measure_sequence(
    parts: Components, cfg: DictConfig, out_dir: Path
) -> tuple[dict[str, float], dict[str, str]]:
    """Everything between loading data and logging: the metrics and the target's tags.

    The data is the job's, read once per process by :func:`load_dataset`.
    """
    from sweep.backend import keras

    # Layer names are numbered per process: start each job from zero, so the same
    # sequence converts to the same bytes whichever job of the sweep it is.
    keras.backend.clear_session()
    phases = Phases()
    data, fingerprint = _loaded(parts)
    data = fit_data_to_model(parts.model, parts.train, data)
    root = outputs_root() / "cache"
    stages = StageCache(root, enabled=cfg.cache.enabled)
    trained, pretrained = _train_stages(parts, data, fingerprint, cfg.seed, stages, phases)
    results = ResultCache(root / "results", enabled=cfg.cache.enabled)
    key = result_key(_weights_checksum(pretrained), fingerprint, parts)
    cached = results.load(key, out_dir)
    if cached is not None:
        log.info("converted model and its results: reused (content key %s)", key)
        metrics, tags = cached
    else:
        keras_accuracy = pretrained.info.get("keras_accuracy")
        if keras_accuracy is None:  # an entry from before accuracies were kept with it
            keras_accuracy = _keras_accuracy(pretrained.model, data)
        metrics, tags, files = convert_and_measure(
            parts, data, pretrained.fresh, keras_accuracy, out_dir, phases
        )
        results.store(key, out_dir, metrics, tags, files)
    with phases("latency"):
        timing, timing_tags = _latency(parts, data, key, out_dir, results)
    return {
        **metrics,
        **timing,
        "keras_bytes": float(trained.path.stat().st_size),
        "param_count": float(trained.model.count_params()),
        "train_seconds": float(trained.info["seconds"]),
        "pretrain_seconds": float(pretrained.info["seconds"]),
        "train_cache_hit": float(trained.hit),
        "pretrain_cache_hit": float(pretrained.hit),
        "results_cache_hit": float(cached is not None),
        **phases.metrics(),
    }, {**tags, **timing_tags, "results.key": key}
