"""Shared fixtures: the committed real-data subsets, one trained CNN, its conversions.

Nothing here needs the internet or ../shared: the MNIST and Fashion-MNIST
subsets under tests/data are real images (see tests/data/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
QUANTIZERS = ("none", "dynamic_range", "float16", "int8")


@pytest.fixture(scope="session")
def fixture_data_dir() -> Path:
    return DATA


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Outputs (MLflow store, cache, Hydra folders) in tmp_path; data from the fixtures."""
    monkeypatch.setenv("SWEEP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("SWEEP_DATA_DIR", str(DATA))
    return tmp_path


def compose(overrides: list[str] | None = None, with_hydra: bool = False):
    """The job config as Hydra composes it for ``python -m sweep <overrides>``.

    ``with_hydra`` keeps Hydra's own block (launcher, sweeper) in the result.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweep.paths import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=with_hydra)


def sweep_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a ``python -m sweep`` subprocess writing only into tmp_path."""
    return {
        **os.environ,
        "SWEEP_OUTPUTS": str(tmp_path / "outputs"),
        "SWEEP_DATA_DIR": str(DATA),
        "HYDRA_FULL_ERROR": "0",
    }


def tflm_invokes(model: bytes, arena: int) -> bool:
    """Ask the tflite-micro interpreter itself, not sweep.mcu."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        detail = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(tuple(detail["shape"]), detail["dtype"]), 0)
        interpreter.invoke()
    except RuntimeError:
        return False
    return True


@pytest.fixture(scope="session")
def mnist_small():
    """3,000 train and 1,000 test images of real MNIST."""
    from sweep.data import ImageDataset

    return ImageDataset(name="mnist", path=str(DATA / "mnist")).load()


@pytest.fixture(scope="session")
def trained_cnn(mnist_small):
    """The reference CNN, trained four epochs on the MNIST subset with the project's trainer."""
    from sweep.backend import keras
    from sweep.models import ConvNet
    from sweep.training import FitTrainer

    keras.utils.set_random_seed(0)
    model = ConvNet().build(mnist_small.input_shape, mnist_small.num_classes)
    FitTrainer(epochs=4).fit(model, mnist_small.x_train, mnist_small.y_train)
    return model


@pytest.fixture(scope="session")
def converted(trained_cnn, mnist_small) -> dict[str, bytes]:
    """The trained CNN converted by each post-training quantizer of the project."""
    from sweep.quantize import DynamicRange, Float16, Float32, FullInteger

    quantizers = {
        "none": Float32(),
        "dynamic_range": DynamicRange(),
        "float16": Float16(),
        "int8": FullInteger(calibration_samples=200),
    }
    return {name: q.convert(trained_cnn, mnist_small.x_train) for name, q in quantizers.items()}
