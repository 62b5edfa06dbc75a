"""A user's own material, made from the real MNIST subset: a folder of PNG images in class
folders, and a model trained outside the tool with its own recipe (its architecture,
SGD with momentum, a softmax head, one-hot labels if asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.config import DATA

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def mnist_arrays(per_class_train: int, per_class_test: int) -> tuple[np.ndarray, ...]:
    """The first images of each digit of the committed MNIST subset, uint8 (N, 28, 28)."""
    from sweep.groups.dataset import load_idx_folder

    x_train, y_train, x_test, y_test = load_idx_folder(DATA / "mnist")

    def take(x: np.ndarray, y: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        index = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        return x[index], y[index].astype(np.int64)

    return (*take(x_train, y_train, per_class_train), *take(x_test, y_test, per_class_test))


def write_image_folder(
    root: Path,
    per_class_train: int = 60,
    per_class_test: int = 20,
    split: bool = True,
    rgb: bool = False,
    size: int = 28,
) -> Path:
    """PNG files under ``root/train/<digit>/`` and ``root/test/<digit>/`` (``split``), or all
    under ``root/<digit>/``; grayscale or RGB, resized to ``size`` when it is not 28."""
    from PIL import Image

    x_train, y_train, x_test, y_test = mnist_arrays(per_class_train, per_class_test)
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / part / DIGITS[label] if split else root / DIGITS[label]
            folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(image, mode="L")
            if rgb:  # tint each digit so colour carries signal, as photos do
                picture = Image.merge("RGB", (picture, picture.point(lambda v: v // 2), picture))
            if size != 28:
                picture = picture.resize((size, size), Image.Resampling.BILINEAR)
            picture.save(folder / f"{part}-{i:05d}.png")
    return root


def train_own_model(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    functional: bool = True,
    one_hot: bool = False,
    epochs: int = 3,
):
    """A model trained the user's way, not the tool's: a functional CNN with batch
    normalization and dropout (or a small Sequential MLP), a softmax head, SGD with
    momentum; one-hot labels with categorical cross-entropy when ``one_hot``."""
    from sweep.backend import keras

    keras.utils.set_random_seed(1)
    if functional:
        inputs = keras.Input(x.shape[1:])
        h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dropout(0.2)(h)
        outputs = keras.layers.Dense(num_classes, activation="softmax")(h)
        model = keras.Model(inputs, outputs, name="users_cnn")
    else:
        model = keras.Sequential(
            [
                keras.layers.InputLayer(x.shape[1:]),
                keras.layers.Flatten(),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(num_classes, activation="softmax"),
            ],
            name="users_mlp",
        )
    loss = "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss=loss, metrics=["accuracy"])
    targets = np.eye(num_classes, dtype=np.float32)[y] if one_hot else y
    model.fit(x, targets, batch_size=32, epochs=epochs, verbose=0)
    return model


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """The model's own accuracy, as its user would compute it."""
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def booby_trapped(marker: Path, functional: bool = False):
    """A Keras model whose Lambda layer writes ``marker`` whenever it is built or called."""
    from sweep.backend import keras

    payload = eval(  # the code an attacker would store: it only writes a marker file
        f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]"
    )
    if functional:  # the Lambda hidden between ordinary layers
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Lambda(payload, name="innocent")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(10)(hidden))
    return keras.Sequential(
        [keras.layers.InputLayer((28, 28, 1)), keras.layers.Lambda(payload, name="payload"),
         keras.layers.Flatten(), keras.layers.Dense(10)]
    )  # fmt: skip


BAD_CASES = ("not a model", "lambda layer", "mismatched shape", "corrupt image")


def bad_inputs(root: Path, photos: Path, model: Path) -> dict[str, tuple[Path, Path, Path]]:
    """Per case of :data:`BAD_CASES`: (image folder, model file, the file the refusal must
    name), made under ``root`` from a good image folder and model."""
    import shutil

    from sweep.backend import keras

    text = root / "not_a_model.keras"
    text.write_text("hello")
    lam = root / "lambda.h5"
    booby_trapped(root / "marker").save(lam)
    (root / "marker").unlink(missing_ok=True)
    rgb = root / "rgb_model.keras"
    keras.Sequential([keras.layers.InputLayer((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(10, activation="softmax")]).save(rgb)  # fmt: skip
    corrupt = Path(shutil.copytree(photos, root / "corrupt"))
    bad_image = sorted(next(p for p in sorted((corrupt / "train").iterdir())).iterdir())[3]
    bad_image.write_bytes(bad_image.read_bytes()[:50])
    return {
        "not a model": (photos, text, text),
        "lambda layer": (photos, lam, lam),
        "mismatched shape": (photos, rgb, rgb),
        "corrupt image": (corrupt, model, bad_image),
    }
