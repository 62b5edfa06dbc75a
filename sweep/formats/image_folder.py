"""Reading a folder of images, one subfolder per class, the way people keep photos.

Two layouts, found by looking: ``<root>/train/<class>/`` and ``<root>/test/<class>/``, or
``<root>/<class>/`` split into train and test by a seeded draw per class (so every class
gets test images in the same proportion, and the same seed gives the same split). Class
names are the folder names, in sorted order; files are listed in sorted order, so the same
folder always gives the same arrays.

The images are untrusted input: each is read with a size bound, its format is taken from
its content (PNG or JPEG only), and its pixel count from its header is bounded *before* it
is decoded (a few-KB PNG can declare a 50,000 × 50,000 image: a decompression bomb). The
decoded arrays' total size is bounded before any image is decoded. Decoding is Pillow's
(installed with matplotlib; ``Image.open`` reads only the header).
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.formats.idx import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
MAX_FILE_BYTES = 64 * 2**20
"""An image file larger than this is refused unread."""
MAX_IMAGE_PIXELS = 40_000_000
"""An image whose header declares more pixels than this (a 40-megapixel photo) is refused
before it is decoded."""
MAX_ARRAY_BYTES = 4 * 2**30
"""The decoded train and test arrays together (float32), checked before decoding anything."""
TRAIN, TEST = "train", "test"
_PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class ImageFiles:
    """The images of a folder by split, each with its class index, and how they were split."""

    class_names: tuple[str, ...]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    layout: str

    def counts(self) -> str:
        """``cat 120/30, dog 118/29`` (train/test images per class), for the log."""
        train = np.bincount([c for _, c in self.train], minlength=len(self.class_names))
        test = np.bincount([c for _, c in self.test], minlength=len(self.class_names))
        return ", ".join(
            f"{name} {a}/{b}" for name, a, b in zip(self.class_names, train, test, strict=True)
        )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _images(folder: Path) -> list[Path]:
    """The images under one class folder (subfolders too, symlinked folders not followed)."""
    found, skipped = [], 0
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(parent) / name
            if not _visible(path):
                continue
            if path.suffix.lower() in SUFFIXES:
                found.append(path)
            else:
                skipped += 1
    if skipped:
        log.warning("%s: %d file(s) that are not .png/.jpg/.jpeg left out", folder, skipped)
    return sorted(found, key=lambda p: p.as_posix())


def _classes(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if len(folders) < 2:
        raise DataError(
            f"{root}: found {len(folders)} class folder(s); an image folder holds one "
            "subfolder per class (at least two), or train/ and test/ folders holding them"
        )
    return folders


def _per_class(root: Path, names: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """Each class folder's images; a class folder without images is refused."""
    folders = _classes(root) if names is None else [root / n for n in names]
    found = {}
    for folder in folders:
        images = _images(folder) if folder.is_dir() else []
        if not images:
            raise DataError(
                f"{folder}: no .png, .jpg or .jpeg images; every class needs some "
                "(remove the folder if it is not a class)"
            )
        found[folder.name] = images
    return found


def _split_folders(root: Path) -> ImageFiles:
    train_root, test_root = root / TRAIN, root / TEST
    if not test_root.is_dir():
        raise DataError(f"{root}: has {TRAIN}/ but no {TEST}/ folder (give both, or neither)")
    names = [p.name for p in _classes(train_root)]
    test_names = [p.name for p in _classes(test_root)]
    extra = sorted(set(test_names) - set(names))
    if extra:
        raise DataError(
            f"{test_root}: classes {extra} have no folder in {train_root}; train/ and test/ "
            "must hold the same class folders"
        )
    missing = [n for n in names if n not in test_names]
    if missing:
        raise DataError(
            f"{test_root}: class {missing[0]!r} has no test images ({test_root / missing[0]} "
            "is missing); every class needs test images"
        )
    train, test = _per_class(train_root, names), _per_class(test_root, names)
    return ImageFiles(
        tuple(names),
        [(p, i) for i, n in enumerate(names) for p in train[n]],
        [(p, i) for i, n in enumerate(names) for p in test[n]],
        f"{TRAIN}/ and {TEST}/ folders",
    )


def _split_draw(root: Path, test_fraction: float, seed: int) -> ImageFiles:
    per_class = _per_class(root)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for index, (name, images) in enumerate(per_class.items()):
        n_test = math.ceil(test_fraction * len(images))
        if n_test >= len(images) or n_test == 0:
            raise DataError(
                f"{root / name}: {len(images)} image(s) cannot be split into train and test "
                f"with dataset.test_fraction={test_fraction}; give the class more images, or "
                f"{TRAIN}/ and {TEST}/ folders"
            )
        order = rng.permutation(len(images))
        test += [(images[i], index) for i in sorted(order[:n_test])]
        train += [(images[i], index) for i in sorted(order[n_test:])]
    return ImageFiles(
        tuple(per_class),
        train,
        test,
        f"one folder per class, {test_fraction:g} of each drawn for test with seed {seed}",
    )


def list_image_folder(root: Path, test_fraction: float, seed: int) -> ImageFiles:
    """The images of ``root`` by split and class (see the module docstring for layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: not a folder; expected a folder of class subfolders of .png/.jpg images"
        )
    if (root / TRAIN).is_dir():
        return _split_folders(root)
    return _split_draw(root, test_fraction, seed)


def check_array_size(count: int, shape: tuple[int, ...], where: Path) -> None:
    """Refuse, before decoding, arrays that would take more than :data:`MAX_ARRAY_BYTES`."""
    need = count * math.prod(shape) * 4
    if need > MAX_ARRAY_BYTES:
        raise DataError(
            f"{where}: {count:,} images of {shape} take {need:,} bytes as float32, over the "
            f"{MAX_ARRAY_BYTES:,}-byte limit; set dataset.train_limit / dataset.test_limit "
            "or a smaller dataset.image_size"
        )


def decode_image(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    """One image as uint8 (height, width, channels), in ``mode`` "L" or "RGB", resized
    (bilinear) to ``size`` = (height, width) when it differs."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: over the {MAX_FILE_BYTES:,}-byte limit of one image")
        with path.open("rb") as stream:
            blob = stream.read(MAX_FILE_BYTES + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob), formats=FORMATS) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"{path}: declares {width}×{height} pixels, over the "
                        f"{MAX_IMAGE_PIXELS:,}-pixel limit of one image; refused undecoded"
                    )
                image = image.convert(mode)
                if image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused undecoded, a decompression bomb? ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Warning) as exc:
        raise DataError(
            f"{path}: not a readable PNG or JPEG image ({type(exc).__name__}: {exc}); "
            "remove or replace it"
        ) from None
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def decode_images(
    files: Sequence[tuple[Path, int]], size: tuple[int, int], mode: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """All ``files`` decoded into one uint8 array (N, H, W, C), with their labels."""
    channels = 1 if mode == "L" else 3
    x = np.empty((len(files), *size, channels), dtype=np.uint8)
    started = last = time.perf_counter()
    for i, (path, _) in enumerate(files):
        x[i] = decode_image(path, size, mode)
        if time.perf_counter() - last > _PROGRESS_SECONDS:
            last = time.perf_counter()
            log.info("%s: %d/%d images decoded (%.0f s)", what, i + 1, len(files), last - started)
    y = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
    return x, y
