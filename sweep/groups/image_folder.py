"""``dataset=image_folder``: images in class folders (PNG/JPEG), as a project keeps them.

The reading and its bounds are :mod:`sweep.formats.image_folder`'s; this option chooses
the images (split, seeded order, limits), says how many each class has, and gives the
pixels the shape and range the model was trained on: ``image_size`` (height, width),
``color`` (grayscale or RGB) and ``value_range`` (``[0, 1]`` by default; ``[0, 255]`` for
a model that rescales its inputs itself, as one trained on
``keras.utils.image_dataset_from_directory`` with a Rescaling layer does).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.formats.idx import DataError
from sweep.formats.image_folder import (
    ImageFiles,
    check_array_size,
    decode_images,
    list_image_folder,
)
from sweep.groups.dataset import Dataset, DatasetSource
from sweep.settings import Rule, at_least, fraction, one_of, plain_name, setting

log = logging.getLogger(__name__)


def _size_rule() -> Rule:
    def ok(value, _) -> bool:
        sizes = [value] if isinstance(value, int) else value
        return (
            isinstance(sizes, list)
            and len(sizes) in (1, 2)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)
        )

    return Rule(ok, "an integer >= 1 (a square) or [height, width]")


def _range_rule() -> Rule:
    def ok(value, _) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            and value[0] < value[1]
        )

    return Rule(ok, "[low, high] with low < high, e.g. [0, 1] or [0, 255]")


@dataclass
class ImageFolder(DatasetSource):
    """Class subfolders of PNG/JPEG images (``train/`` and ``test/``, or split by seed)."""

    name: str = setting("image_folder", plain_name())
    path: str | None = None
    image_size: int | list = setting(28, _size_rule())
    color: str = setting("grayscale", one_of("grayscale", "rgb"))
    value_range: list = setting(factory=lambda: [0.0, 1.0], rule=_range_rule())
    test_fraction: float = setting(0.2, fraction())
    split_seed: int = setting(0, at_least(0))
    train_limit: int | None = setting(None, at_least(1))
    test_limit: int | None = setting(None, at_least(1))

    @property
    def size(self) -> tuple[int, int]:
        sizes = [self.image_size] if isinstance(self.image_size, int) else self.image_size
        return (sizes[0], sizes[-1])

    @property
    def location(self) -> Path:
        if not self.path or self.path == "???":
            raise DataError(
                "dataset.path is not set: dataset=image_folder needs dataset.path=<a folder "
                "of class subfolders of .png/.jpg images>"
            )
        return Path(os.path.expandvars(self.path)).expanduser()

    def _chosen(self, files: ImageFiles) -> tuple[list, list]:
        """Each split in a seeded order (so a limit takes every class), cut to its limit."""
        rng = np.random.default_rng(self.split_seed)
        chosen = []
        for split, limit, key in (
            (files.train, self.train_limit, "train_limit"),
            (files.test, self.test_limit, "test_limit"),
        ):
            if limit is not None and limit > len(split):
                raise DataError(
                    f"dataset.{key}={limit} is larger than the {len(split)} images available "
                    f"in {self.location}"
                )
            order = rng.permutation(len(split))[:limit]
            chosen.append([split[i] for i in order])
        return chosen[0], chosen[1]

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        low, high = (float(v) for v in self.value_range)
        return np.multiply(x, np.float32((high - low) / 255), dtype=np.float32) + np.float32(low)

    def load(self) -> Dataset:
        """List, split, check and decode the images (DataError naming a bad file)."""
        started = time.perf_counter()
        root = self.location
        files = list_image_folder(root, self.test_fraction, self.split_seed)
        log.info(
            "dataset %s: %d classes in %s (%s); images per class, train/test: %s",
            self.name,
            len(files.class_names),
            root,
            files.layout,
            files.counts(),
        )
        train, test = self._chosen(files)
        mode = "L" if self.color == "grayscale" else "RGB"
        check_array_size(len(train) + len(test), (*self.size, 1 if mode == "L" else 3), root)
        x_train, y_train = decode_images(train, self.size, mode, f"{root} train")
        x_test, y_test = decode_images(test, self.size, mode, f"{root} test")
        data = Dataset(
            self.name,
            self._scaled(x_train),
            y_train,
            self._scaled(x_test),
            y_test,
            files.class_names,
            str(root),
        )
        log.info(
            "dataset %s from %s: train %s, test %s, %d classes (%.2f s)",
            self.name,
            root,
            data.x_train.shape,
            data.x_test.shape,
            data.num_classes,
            time.perf_counter() - started,
        )
        return data
