"""Shared fixtures: the committed real-data subsets, one trained CNN, its conversions;
and the ``needs`` marker (tests/helpers/system.py) that skips, or in CI fails, a test
whose system packages are missing.

Nothing here needs the internet or ../shared: the MNIST and Fashion-MNIST
subsets under tests/data are real images (see tests/data/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.config import DATA
from helpers.system import REQUIRE, missing_for, required

# The Cortex-M library takes minutes to build per CPU: every test (and every sweep a test
# starts) shares one build per CPU in the user's cache, as .ci/run does, unless the
# environment names another folder. Its key covers the sources, flags and compiler, so
# clones of the project share it safely. Tests move SWEEP_OUTPUTS into tmp_path, which puts
# that shared cache outside the outputs folder: SWEEP_ALLOW_OUTSIDE_OUTPUTS=1 is the explicit
# opt-in such a cache needs.
os.environ.setdefault(
    "SWEEP_FIRMWARE_CACHE",
    str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sweep" / "firmware"),
)
os.environ.setdefault("SWEEP_ALLOW_OUTSIDE_OUTPUTS", "1")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core the process may use, at most
    four. Each worker imports TensorFlow and trains its own session fixtures (~1.5 GB), and
    the sweeps the tests start use the cores too: more workers would only queue."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return max(1, min(len(usable) if usable else os.cpu_count() or 1, 4))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test whose needs are missing is skipped with one line saying what to install."""
    if required():
        return  # pytest_runtest_setup fails it instead
    for item in items:
        if missing := missing_for(item):
            item.add_marker(pytest.mark.skip(reason="; ".join(missing)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """With SWEEP_REQUIRE_SYSTEM_PACKAGES=1 (CI) a missing need is a failure, not a skip."""
    if required() and (missing := missing_for(item)):
        pytest.fail(f"{'; '.join(missing)} ({REQUIRE}=1)", pytrace=False)


@pytest.fixture(scope="session")
def fixture_data_dir() -> Path:
    return DATA


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Outputs (MLflow store, cache, Hydra folders) in tmp_path; data from the fixtures."""
    monkeypatch.setenv("SWEEP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("SWEEP_DATA_DIR", str(DATA))
    return tmp_path


@pytest.fixture(scope="session")
def mnist_small():
    """3,000 train and 1,000 test images of real MNIST."""
    from sweep.groups.dataset import ImageDataset

    return ImageDataset(name="mnist", path=str(DATA / "mnist")).load()


@pytest.fixture(scope="session")
def trained_cnn(mnist_small):
    """The reference CNN, trained four epochs on the MNIST subset with the project's trainer."""
    from sweep.backend import keras
    from sweep.groups.model import ConvNet
    from sweep.groups.train import FitTrainer

    keras.utils.set_random_seed(0)
    model = ConvNet().build(mnist_small.input_shape, mnist_small.num_classes)
    FitTrainer(epochs=4).fit(model, mnist_small.x_train, mnist_small.y_train)
    return model


@pytest.fixture(scope="session")
def converted(trained_cnn, mnist_small) -> dict[str, bytes]:
    """The trained CNN converted by each post-training quantizer of the project."""
    from sweep.groups.quantize import (
        DynamicRange,
        Float16,
        Float32,
        FullInteger,
        Int16x8,
        IntegerWithFloatFallback,
    )

    quantizers = {
        "none": Float32(),
        "dynamic_range": DynamicRange(),
        "float16": Float16(),
        "int8": FullInteger(calibration_samples=200),
        "int8_fallback": IntegerWithFloatFallback(calibration_samples=200),
        "int16x8": Int16x8(calibration_samples=200),
    }
    return {name: q.convert(trained_cnn, mnist_small.x_train) for name, q in quantizers.items()}
