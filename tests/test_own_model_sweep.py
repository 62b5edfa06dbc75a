"""End to end, in a subprocess: a model trained outside the tool, swept over pre-training and
quantizers on a board with an image folder; bad files stopping the sweep before anything is
recorded; and run names telling apart runs that differ only by a setting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers.own_model import (
    BAD_CASES,
    accuracy,
    bad_inputs,
    train_own_model,
    write_image_folder,
)
from helpers.sweeps import check_one_finished_sweep, run_sweep, runs_by_role, seed_store
from helpers.system import needs_cortex_m


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """An image folder of 600 train and 300 test digits (the sweeps' limits take them all), a
    model trained on it the user's way and saved as .keras, and its own test accuracy."""
    from sweep.groups.image_folder import ImageFolder

    root = tmp_path_factory.mktemp("users")
    photos = write_image_folder(root / "photos", 60, 30)
    data = ImageFolder(path=str(photos)).load()
    model = train_own_model(data.x_train, data.y_train, data.num_classes, epochs=4)
    model.save(root / "users_model.keras")
    return photos, root / "users_model.keras", accuracy(model, data.x_test, data.y_test)


def _own(photos: Path, model: Path) -> list[str]:
    return [
        "model=keras_file",
        f"model.path={model}",
        "train=none",
        "dataset=image_folder",
        f"dataset.path={photos}",
    ]


@needs_cortex_m  # the board's emulated build
@pytest.mark.slow
def test_the_users_model_is_swept_on_the_board_without_training(tmp_path, material) -> None:
    photos, model, own_accuracy = material
    seed_store(tmp_path)
    result = run_sweep(
        tmp_path,
        *_own(photos, model),
        "pretrain=none,qat",  # pruning an own model: test_own_model.py
        "quantize=none,int8",
        "target=nano33_ble_sense",
        "target.emulate_images=2",  # the board's figures need one; float32 takes ~1 s an image
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "train epoch" not in output  # nothing trained from scratch
    assert "qat epoch" in output  # fine-tuned from its weights
    parents, children = runs_by_role(tmp_path)
    check_one_finished_sweep(parents, children, 4)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert {c.data.tags["model.sha256"] for c in children} == {sha}
    assert {c.data.metrics["train_seconds"] for c in children} == {
        children[0].data.metrics["train_seconds"]
    }  # one loading of the file, reused from the cache by the other three
    plain = next(
        c
        for c in children
        if c.data.tags["sequence.pretrain"] == "none" and c.data.tags["sequence.quantize"] == "none"
    )
    assert plain.data.metrics["keras_accuracy"] == own_accuracy
    assert abs(plain.data.metrics["tflite_accuracy"] - own_accuracy) <= 0.001
    ranking = json.loads((tmp_path / "outputs" / "sweep" / "ranking.json").read_text())
    floor = ranking["accuracy_floor"]["image_folder"]["floor_accuracy"]
    winners = ranking["winners"]["image_folder"]
    assert {"smallest", "most_accurate", "fastest"} <= set(winners)
    accuracies = {c.info.run_id: c.data.metrics["tflite_accuracy"] for c in children}
    for objective, winner in winners.items():
        assert all(accuracies[run] >= floor - 1e-12 for run in winner["run_ids"]), objective
    # The answer, ready to flash: the smallest winner's firmware bundle in the sweep folder.
    smallest = tmp_path / "outputs" / "sweep" / "winners" / "image_folder" / "smallest"
    assert (
        json.loads((smallest / "winner.json").read_text())["run_id"]
        in winners["smallest"]["run_ids"]
    )
    assert (smallest / "bundle" / "model_data.cc").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_file_stops_the_sweep_with_one_line(tmp_path, material, case: str) -> None:
    folder, model, named = bad_inputs(tmp_path, material[0], material[1])[case]
    overrides = _own(folder, model)
    result = run_sweep(tmp_path, *overrides, "pretrain=none,pruning", "quantize=none,int8")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    read = f"model file {named}:"  # the information line of a model file that was read
    lines = [line for line in output.splitlines() if str(named) in line and read not in line]
    assert len(lines) == 1, output[-3000:]  # one line, naming the file
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # no run, not even a parent
    assert not (tmp_path / "marker").exists()


@pytest.mark.slow
def test_runs_that_differ_by_a_setting_have_different_names(tmp_path: Path) -> None:
    # cache.enabled=true reaches each job as Hydra renders it, cache.enabled=True: still shared
    seed_store(tmp_path)
    result = run_sweep(  # one job at a time: names are the question, not side-by-side workers
        tmp_path,
        "model.filters=1,2",
        "quantize=none",
        "cache.enabled=true",
        "hydra.sweeper.workers=1",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    parents, children = runs_by_role(tmp_path)
    check_one_finished_sweep(parents, children, 2)
    names = {c.data.tags["mlflow.runName"] for c in children}
    assert names == {
        "mnist · cnn · fit · none → none [model.filters=1]",
        "mnist · cnn · fit · none → none [model.filters=2]",
    }  # the shared dataset.train_limit=600 is in neither name, but in the parent's tag
    assert "dataset.train_limit=600" in parents[0].data.tags["sweep.fixed_settings"]
    assert "cache.enabled=True" in parents[0].data.tags["sweep.fixed_settings"]
    report = (tmp_path / "outputs" / "sweep" / "ranking.md").read_text()
    assert "[model.filters=1]" in report and "[model.filters=2]" in report
