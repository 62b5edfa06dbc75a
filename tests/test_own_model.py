"""``model=keras_file``: a model trained outside the tool, loaded safely, fine-tuned with its
own loss, and checked against the data before any run opens.

Every model here is really trained (its own recipe: SGD with momentum, a softmax head) and
really saved in each format; the files that must be refused are planted with code that
would write a marker file, and each test proves the marker was never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.config import compose
from helpers.own_model import (
    BAD_CASES,
    accuracy,
    bad_inputs,
    booby_trapped,
    mnist_arrays,
    train_own_model,
    write_image_folder,
)
from helpers.processes import SAFETY_NET_SECONDS

from sweep.backend import keras, tf
from sweep.errors import UserError
from sweep.formats.keras_model import ModelFileError
from sweep.groups.keras_file import KerasFile
from sweep.pipeline.components import instantiate_components
from sweep.settings import ConfigError

FORMATS = {"keras": "own.keras", "h5": "own.h5", "savedmodel": "own_savedmodel"}
QUICK = ["measure.windows=3", "measure.window_ms=2", "measure.warmup_ms=5"]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    """Real MNIST images, (N, 28, 28, 1) in [0, 1], 30 per class to train, 10 to test."""
    x_train, y_train, x_test, y_test = mnist_arrays(30, 10)
    return x_train[..., None] / 255.0, y_train, x_test[..., None] / 255.0, y_test


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, digits) -> tuple[keras.Model, Path]:
    """A user's functional CNN (batch norm, dropout, softmax), saved in every format."""
    folder = tmp_path_factory.mktemp("own")
    model = train_own_model(digits[0], digits[1], 10, epochs=2)
    for name in FORMATS.values():
        model.save(folder / name)
    return model, folder


@pytest.mark.parametrize("kind", FORMATS)
def test_each_format_loads_the_files_weights(own, digits, kind: str) -> None:
    model, folder = own
    builder = KerasFile(path=str(folder / FORMATS[kind]))
    loaded = builder.build((28, 28, 1), 10)
    x_test = digits[2]
    np.testing.assert_array_equal(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )
    assert builder.provenance()["model.format"] == kind
    assert builder.build((28, 28, 1), 10) is not loaded  # a fresh model each time


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_a_lambda_layer_is_refused_and_never_runs(tmp_path: Path, kind: str, functional) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / FORMATS[kind]
    booby_trapped(marker, functional).save(path)
    marker.unlink()  # building the model ran the payload once: start from no marker
    with pytest.raises(ModelFileError) as refused:
        KerasFile(path=str(path)).build((28, 28, 1), 10)
    message = str(refused.value)
    name = "innocent" if functional else "payload"
    assert f"model.path={path}: layer '{name}' is a Lambda layer" in message
    assert "model.custom_objects=<module>" in message and "\n" not in message
    assert not marker.exists()


def _planted_module(folder: Path, name: str, marker: Path) -> None:
    """An installed-looking module that writes ``marker`` when it is imported."""
    (folder / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        "from tf_keras import Sequential as Planted\n"
    )


def _rewrite_keras_config(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in files.items():
            archive.writestr(name, blob)


def _planted_model(tmp_path: Path, module: str) -> Path:
    """A .keras file whose model is class Planted of ``module``."""
    path = tmp_path / "planted.keras"
    keras.Sequential([keras.layers.InputLayer((28, 28, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)], name="planted").save(path)  # fmt: skip
    _rewrite_keras_config(path, lambda config: config.update(module=module, class_name="Planted"))
    return path


def test_keras_imports_the_module_a_keras_config_names(tmp_path, monkeypatch) -> None:
    """Why configs are checked before Keras reads them: even in safe mode, Keras imports
    the module each object of a .keras config names."""
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "imported"
    _planted_module(tmp_path, "sweep_planted_a", marker)
    with contextlib.suppress(Exception):  # whether the model then builds does not matter
        keras.models.load_model(_planted_model(tmp_path, "sweep_planted_a"), safe_mode=True)
    assert marker.read_text() == "imported"


def test_a_config_naming_another_module_is_refused_unimported(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "imported"
    _planted_module(tmp_path, "sweep_planted_b", marker)
    path = _planted_model(tmp_path, "sweep_planted_b")
    with pytest.raises(
        ModelFileError, match=r"is Planted \(from module 'sweep_planted_b'\), not a Keras"
    ):
        KerasFile(path=str(path)).build((28, 28, 1), 10)
    assert not marker.exists() and "sweep_planted_b" not in sys.modules


def test_tf_op_layers_may_call_only_pure_functions(digits, tmp_path: Path) -> None:
    inputs = keras.Input((28, 28, 1))
    hidden = tf.nn.relu(keras.layers.Flatten()(inputs) * 2.0 - 0.5)  # TFOpLambda layers
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    model.save(tmp_path / "ops.h5")
    loaded = KerasFile(path=str(tmp_path / "ops.h5")).build((28, 28, 1), 10)
    np.testing.assert_allclose(
        loaded.predict(digits[2], verbose=0), model.predict(digits[2], verbose=0)
    )
    with h5py.File(tmp_path / "ops.h5", "r+") as h5:  # the same op layer, made to write a file
        text = h5.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        h5.attrs["model_config"] = text.replace(
            '"function": "nn.relu"', '"function": "io.write_file"'
        )
    with pytest.raises(ModelFileError, match=r"layer 'tf.nn.relu' calls tf.io.write_file"):
        KerasFile(path=str(tmp_path / "ops.h5")).build((28, 28, 1), 10)


USERS_LAYERS = '''
from sweep.backend import keras


class Scale(keras.layers.Layer):
    """A user's own layer: multiplies by a learned scalar."""

    def build(self, input_shape):
        self.factor = self.add_weight(name="factor", shape=(), initializer="ones")

    def call(self, x):
        return x * self.factor
'''


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_a_custom_layer_loads_only_with_custom_objects(tmp_path, monkeypatch, digits, kind) -> None:
    (tmp_path / "users_layers.py").write_text(USERS_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import users_layers

    model = keras.Sequential(
        [keras.layers.InputLayer((28, 28, 1)), keras.layers.Flatten(),
         users_layers.Scale(name="scale"), keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    path = tmp_path / FORMATS[kind]
    model.save(path)
    with pytest.raises(ModelFileError) as refused:
        KerasFile(path=str(path)).build((28, 28, 1), 10)
    assert re.search(r"layer 'scale' is Scale\b.*, not a Keras layer or class", str(refused.value))
    assert "model.custom_objects=<module>" in str(refused.value)
    builder = KerasFile(path=str(path), custom_objects="users_layers")
    loaded = builder.build((28, 28, 1), 10)
    np.testing.assert_array_equal(
        loaded.predict(digits[2], verbose=0), model.predict(digits[2], verbose=0)
    )
    assert "model.custom_objects.code" in builder.provenance()
    with pytest.raises(ModelFileError, match=r"model.custom_objects=no_such_module_xyz cannot be"):
        KerasFile(path=str(path), custom_objects="no_such_module_xyz").build((28, 28, 1), 10)


def _not_models(tmp_path: Path, own_folder: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.keras"
    text.write_text("a model, honestly")
    png = tmp_path / "picture.h5"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    weights = tmp_path / "weights.h5"
    keras.models.load_model(own_folder / FORMATS["h5"]).save_weights(weights)
    module = tmp_path / "plain_savedmodel"
    tf.saved_model.save(tf.Module(), str(module))
    zipped = tmp_path / "archive.keras"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("readme.txt", "no model here")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "text": (text, "not a Keras model file"),
        "png": (png, "not a Keras model file"),
        "weights only": (weights, "without a model_config attribute"),
        "plain SavedModel": (module, "not a Keras SavedModel"),
        "zip": (zipped, "a zip without config.json"),
        "empty folder": (empty, "not a Keras SavedModel"),
        "missing": (tmp_path / "nowhere.keras", "no such file or folder"),
    }


def test_files_that_are_not_models_are_refused_in_one_line(own, tmp_path: Path) -> None:
    for what, (path, reason) in _not_models(tmp_path, own[1]).items():
        with pytest.raises(ModelFileError) as refused:
            KerasFile(path=str(path)).build((28, 28, 1), 10)
        message = str(refused.value)
        assert message.startswith(f"model.path={path}") and reason in message, (what, message)
        assert "\n" not in message


def test_a_config_declaring_huge_weights_is_refused_before_allocating(own, tmp_path) -> None:
    path = tmp_path / "huge.h5"
    shutil.copy(own[1] / FORMATS["h5"], path)
    with h5py.File(path, "r+") as h5:  # 10⁹ units after 1,352 features: 5 TB of float32
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"][-1]["config"]["units"] = 10**9
        h5.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ModelFileError, match=r"needs over [\d,]+ bytes of weights"):
        KerasFile(path=str(path)).build((28, 28, 1), 10)


def test_the_model_must_fit_the_data(own) -> None:
    builder = KerasFile(path=str(own[1] / FORMATS["keras"]))
    assert builder.input_shape_for((28, 28, 1), 10) == (28, 28, 1)
    assert builder.input_shape_for((28, 28), 10) == (28, 28, 1)  # IDX images: a channel added
    with pytest.raises(ModelFileError, match=r"takes inputs of shape \(28, 28, 1\) but the data"):
        builder.input_shape_for((32, 32, 3), 10)
    with pytest.raises(ModelFileError, match=r"outputs \(10\) but the data has 3 classes"):
        builder.input_shape_for((28, 28, 1), 3)


def test_fine_tuning_uses_the_files_own_loss(digits, tmp_path: Path) -> None:
    from sweep.groups.pretrain import Pruning
    from sweep.groups.train import NoTraining

    x, y = digits[0], digits[1]
    hot = train_own_model(x, y, 10, functional=False, one_hot=True, epochs=1)
    hot.save(tmp_path / "one_hot.keras")
    builder = KerasFile(path=str(tmp_path / "one_hot.keras"))
    objective = builder.objective()
    assert objective.one_hot and "categorical_crossentropy" in objective.description
    trainer = NoTraining().aimed_at(objective)
    pruned = Pruning(fine_tune_epochs=1).apply(builder.build((28, 28, 1), 10), x, y, trainer)
    assert pruned.loss.__name__ == "categorical_crossentropy"  # compiled with the file's loss
    bare = keras.Sequential([keras.layers.InputLayer((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])  # fmt: skip
    bare.save(tmp_path / "uncompiled.h5")  # saved without a loss
    objective = KerasFile(path=str(tmp_path / "uncompiled.h5")).objective()
    assert not objective.one_hot and objective.loss().get_config()["from_logits"] is False


def test_train_none_needs_a_model_that_brings_its_weights(isolated) -> None:
    from sweep.pipeline.sequence import load_dataset

    parts = instantiate_components(compose(["train=none", "dataset.train_limit=100"]))
    with pytest.raises(ConfigError, match=r"train=none keeps a model's weights .* model=cnn"):
        load_dataset(parts)


def test_a_missing_model_path_names_the_setting() -> None:
    parts = instantiate_components(compose(["model=keras_file", "train=none"]))
    with pytest.raises(ConfigError, match=r"^model.path is not set: model=keras_file needs"):
        parts.model.build((28, 28), 10)


# --- one job on a real MLflow store --------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("photos") / "digits", 30, 10)


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> tuple[Path, float]:
    """A model trained outside the tool on the image folder, and its own test accuracy."""
    from sweep.groups.image_folder import ImageFolder

    data = ImageFolder(path=str(photos)).load()
    model = train_own_model(data.x_train, data.y_train, data.num_classes, epochs=3)
    path = tmp_path_factory.mktemp("model") / "users_model.keras"
    model.save(path)
    return path, accuracy(model, data.x_test, data.y_test)


def _job(photos: Path, model: Path, *more: str) -> list[str]:
    return [
        *QUICK,
        "model=keras_file",
        f"model.path={model}",
        "train=none",
        "dataset=image_folder",
        f"dataset.path={photos}",
        *more,
    ]


def test_a_job_keeps_the_files_weights_and_records_its_checksum(
    isolated, photos, photo_model, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.tracking import MlflowClient

    from sweep.pipeline.job import run
    from sweep.stores.paths import default_tracking_uri

    path, own_accuracy = photo_model
    caplog.set_level(logging.INFO)
    first = run(compose(_job(photos, path, "quantize=none")), out_dir=isolated / "first")
    assert not [r for r in caplog.records if "train epoch" in r.getMessage()]  # no training
    assert first.metrics["keras_accuracy"] == own_accuracy
    assert abs(first.metrics["tflite_accuracy"] - own_accuracy) <= 0.001
    assert first.metrics["train_cache_hit"] == 0
    stored = MlflowClient(default_tracking_uri()).get_run(first.run_id)
    assert stored.data.tags["model.sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stored.data.tags["sequence"] == "image_folder · keras_file · none · none → none"

    pruned = run(compose(_job(photos, path, "pretrain=pruning", "quantize=int8")))
    assert pruned.metrics["train_cache_hit"] == 1  # the file's weights, cached by its bytes
    assert pruned.metrics["sparsity"] > 0.5

    changed = keras.models.load_model(path)  # other weights under the same file name
    changed.set_weights([w * 0.5 for w in changed.get_weights()])
    changed.save(path)
    again = run(compose(_job(photos, path, "quantize=none")))
    assert again.metrics["train_cache_hit"] == 0
    assert again.metrics["keras_accuracy"] != first.metrics["keras_accuracy"]


def test_pruning_and_qat_take_the_layers_tfmot_cannot(isolated, photos) -> None:
    """A Rescaling layer (the model takes 0..255 pixels) and BatchNormalization after an
    activation: tfmot refuses both in a whole model; pruning leaves the first as it is, QAT
    keeps both float, and the stage cache rebuilds what they made."""
    from sweep.groups.image_folder import ImageFolder
    from sweep.pipeline.job import run

    data = ImageFolder(path=str(photos), value_range=[0, 255]).load()
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.layers.InputLayer((28, 28, 1)), keras.layers.Rescaling(1 / 255),
         keras.layers.Conv2D(6, 3, activation="relu"), keras.layers.BatchNormalization(),
         keras.layers.MaxPooling2D(), keras.layers.Flatten(),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=3, verbose=0)
    path = isolated / "rescaling.keras"
    model.save(path)
    own = accuracy(model, data.x_test, data.y_test)
    for pretrain in ("pruning", "qat"):
        job = _job(photos, path, f"pretrain={pretrain}", "dataset.value_range=[0,255]")
        first = run(compose([*job, "quantize=int8"]))
        again = run(compose([*job, "quantize=none"]))
        assert first.metrics["pretrain_cache_hit"] == 0 and again.metrics["pretrain_cache_hit"] == 1
        assert again.metrics["keras_accuracy"] == first.metrics["keras_accuracy"]
        assert first.metrics["tflite_accuracy"] > 0.3, (pretrain, own)  # chance: 0.1


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_file_stops_the_job_before_any_run(isolated, photos, photo_model, case) -> None:
    from sweep.pipeline.job import run

    folder, model, named = bad_inputs(isolated, photos, photo_model[0])[case]
    overrides = _job(folder, model)
    with pytest.raises(UserError) as refused:
        run(compose(overrides))
    assert str(named) in str(refused.value) and "\n" not in str(refused.value)
    assert not (isolated / "outputs" / "mlflow.db").exists()
    assert not (isolated / "marker").exists()
    assert re.match(r"^(model|dataset)\.path=|^/", str(refused.value))


# --- Keras 3 files (TensorFlow 2.16+'s default), read into Keras 2 --------------------

KERAS3_MODELS = """
import pathlib, sys
import keras, numpy as np

out = pathlib.Path(sys.argv[1])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.random((64, 28, 28, 1)).astype("float32")
y = rng.integers(0, 10, 64)
inputs = keras.Input((28, 28, 1))
scaled = keras.layers.Rescaling(0.5)(inputs)
a = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(scaled)
b = keras.layers.DepthwiseConv2D(3, padding="same")(a)
c = keras.layers.BatchNormalization()(keras.layers.Add()([a, b]))
d = keras.layers.SeparableConv2D(4, 3, padding="same")(c)
e = keras.layers.MaxPooling2D()(keras.layers.Concatenate()([c, d]))
f = keras.layers.Dropout(0.1)(keras.layers.GlobalAveragePooling2D()(e))
functional = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(f))
functional.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                   loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
sequential = keras.Sequential([
    keras.Input((28, 28, 1)), keras.layers.RandomFlip("horizontal"),  # data_format written
    keras.layers.Conv2D(4, 3, activation="relu"),
    keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(),
    keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
sequential.compile(keras.optimizers.SGD(0.05), metrics=["accuracy"],
                   loss=keras.losses.CategoricalCrossentropy(from_logits=True))
for name, model, targets in (("functional", functional, y), ("sequential", sequential,
                                                              np.eye(10)[y])):
    model.fit(x, targets, epochs=1, verbose=0)
    model.save(out / f"{name}.keras")
    model.save(out / f"{name}.h5")
    np.save(out / f"{name}.npy", model.predict(x, verbose=0))
np.save(out / "x.npy", x)
marker = out / "marker"
payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t)[1]")
keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(payload, name="payload"),
                  keras.layers.Flatten(), keras.layers.Dense(10)]).save(out / "lambda.keras")
marker.unlink()
"""


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models saved by Keras 3 itself, in a process of its own (as a user's training runs)."""
    import os
    import subprocess

    folder = tmp_path_factory.mktemp("keras3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", KERAS3_MODELS, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.mark.parametrize("name", ["functional", "sequential"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras3_model_is_read_into_keras2(keras3_files: Path, name: str, suffix: str) -> None:
    builder = KerasFile(path=str(keras3_files / f"{name}{suffix}"))
    model = builder.build((28, 28, 1), 10)
    x = np.load(keras3_files / "x.npy")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), np.load(keras3_files / f"{name}.npy"), atol=1e-5
    )
    assert builder.provenance()["model.keras_version"].startswith("3.")
    objective = builder.objective()  # the file's own loss, translated
    assert objective.one_hot == (name == "sequential")


def test_a_keras3_lambda_is_refused_and_never_runs(keras3_files: Path) -> None:
    with pytest.raises(ModelFileError, match=r"layer 'payload' is a Lambda layer"):
        KerasFile(path=str(keras3_files / "lambda.keras")).build((28, 28, 1), 10)
    assert not (keras3_files / "marker").exists()
