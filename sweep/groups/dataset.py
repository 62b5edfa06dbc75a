"""Datasets for the sweep, loaded the same way online and offline.

Every job of a sweep needs the same arrays, and most machines that run sweeps
have no internet, so a dataset is looked up in local folders first (IDX files
as MNIST and Fashion-MNIST are distributed, or a Keras-style .npz) and only
downloaded through Keras as a last resort. Problems raise DataError with the
file, the problem and what would be valid, because a sweep of 48 jobs that all
fail with a bare KeyError is the worst way to learn a path is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
import zipfile
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.formats.idx import MAX_PAYLOAD_BYTES, DataError, read_idx
from sweep.settings import at_least, plain_name, setting

__all__ = [
    "DataError",
    "Dataset",
    "ImageDataset",
    "load_idx_folder",
    "load_npz",
    "read_idx",
]

log = logging.getLogger(__name__)

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_NAMES = dict(
    zip(
        KEYS,
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
        strict=True,
    )
)
DATA_DIR_ENV = "SWEEP_DATA_DIR"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")  # Debian's dataset-* packages install here


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test arrays ready for Keras: pixels float32 in [0, 1], labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = ()
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1

    def fingerprint(self) -> str:
        """SHA-256 of the contents, so cached stages are keyed by the data, not its path."""
        digest = hashlib.sha256()
        for key in KEYS:
            array = np.ascontiguousarray(getattr(self, key))
            digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.data)
        digest.update("\x1f".join(self.class_names).encode())
        return digest.hexdigest()


def _check(arrays: dict[str, np.ndarray], where: dict[str, str]) -> Arrays:
    """Shared shape checks; ``where`` names the file (or file[key]) each array came from."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        wx, wy = where[f"x_{split}"], where[f"y_{split}"]
        if y.ndim == 2 and y.shape[1] == 1:  # Keras' CIFAR layout: (N, 1)
            y = arrays[f"y_{split}"] = y.reshape(-1)
        if y.ndim != 1:
            raise DataError(f"{wy}: labels must be 1-D (N,), got shape {y.shape}")
        if x.ndim < 3:
            raise DataError(f"{wx}: images must be (N, H, W) or (N, H, W, C), got {x.shape}")
        if len(x) != len(y):
            raise DataError(
                f"{wx} holds {len(x)} images but {wy} holds {len(y)} labels; "
                "images and labels must have the same count"
            )
        if len(x) == 0:
            raise DataError(f"{wx}: holds no examples (need at least one)")
    return tuple(arrays[k] for k in KEYS)  # type: ignore[return-value]


def load_idx_folder(folder: Path) -> Arrays:
    """Read the four standard IDX files (each gzip or raw) of an MNIST-style folder."""
    folder = Path(folder)
    expected = ", ".join(f"{n}.gz" for n in IDX_NAMES.values())
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; expected a folder holding {expected}")
    files: dict[str, Path] = {}
    for key, stem in IDX_NAMES.items():
        found = [p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()]
        if found:
            files[key] = found[0]
    missing = [f"{IDX_NAMES[k]}.gz" for k in KEYS if k not in files]
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}; an IDX dataset folder holds "
            f"{expected} (gzip or not)"
        )
    arrays = {key: read_idx(path) for key, path in files.items()}
    return _check(arrays, {k: str(p) for k, p in files.items()})


NPZ_MAX_INFLATION = 100
"""How many times its compressed size one member of an .npz may inflate to (beyond
:data:`NPZ_SMALL_MEMBER_BYTES`): image arrays deflate 2-10x, a zip bomb ~1000x."""
NPZ_SMALL_MEMBER_BYTES = 16 * 2**20
"""Members up to this size may compress any amount (a column of one label does)."""
_NPY_MAGIC = b"\x93NUMPY"


def load_npz(path: Path) -> Arrays:
    """Read a Keras-style .npz (as in mnist.npz) without ever unpickling, and without
    inflating a member before its sizes are checked: every member's compressed and
    inflated size (from the zip directory) and its array header must agree, within
    :data:`NPZ_MAX_INFLATION` and :data:`~sweep.formats.idx.MAX_PAYLOAD_BYTES` in all."""
    path = Path(path)
    try:
        with path.open("rb") as probe:
            if probe.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise DataError(
                    f"{path}: a single array, not an .npz archive with arrays {list(KEYS)}"
                )
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = [k for k in KEYS if k not in members]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {missing}; expected arrays "
                    f"{list(KEYS)} (found {sorted(members)})"
                )
            total = sum(members[k].file_size for k in KEYS)
            if total > MAX_PAYLOAD_BYTES:
                raise DataError(
                    f"{path}: its arrays inflate to {total:,} bytes, over the "
                    f"{MAX_PAYLOAD_BYTES:,}-byte limit (sweep.formats.idx.MAX_PAYLOAD_BYTES)"
                )
            arrays = {k: _npz_member(archive, members[k], f"{path}[{k}]") for k in KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz with arrays {list(KEYS)} ({exc})") from exc
    return _check(arrays, {k: f"{path}[{k}]" for k in KEYS})


def _npz_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One member's array, read only after its sizes and its header were found consistent."""
    size, packed = info.file_size, max(info.compress_size, 1)
    if size > NPZ_SMALL_MEMBER_BYTES and size > NPZ_MAX_INFLATION * packed:
        raise DataError(
            f"{where}: inflates {size / packed:,.0f}x, from {packed:,} to {size:,} bytes; an "
            f".npz member may inflate at most {NPZ_MAX_INFLATION}x (a zip bomb otherwise)"
        )
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise DataError(f"{where}: .npy format version {version} is not read")
        if dtype.hasobject:  # stored as a pickle: never read
            raise ValueError(f"{where} is an object array, stored as a pickle")
        expected = math.prod(shape) * dtype.itemsize
        if stream.tell() + expected != size:
            raise DataError(
                f"{where}: its header says shape {shape} of {dtype} = {expected:,} bytes, "
                f"but the member holds {size - stream.tell():,} (they must agree)"
            )
        data = bytearray(expected)
        if stream.readinto(data) != expected:
            raise DataError(f"{where}: truncated ({expected:,} bytes expected)")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _pixels(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return np.divide(x, np.float32(255), dtype=np.float32)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"{where}: float pixels must be in [0, 1], got [{x.min():g}, {x.max():g}]"
            )
        return x
    raise DataError(f"{where}: pixels must be uint8 or floats in [0, 1], got {x.dtype}")


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {y.dtype}")
    if y.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, found {y.min()}")
    return y.astype(np.int64)


class DatasetSource(ABC):
    """Interface of the ``dataset`` group: a named source of train/test arrays."""

    name: str

    @abstractmethod
    def load(self) -> Dataset:
        """Read, check and scale the data (raises :class:`DataError` with a remedy)."""


@dataclass
class ImageDataset(DatasetSource):
    """One dataset option of the ``dataset`` config group (``_target_`` of its YAML).

    ``load()`` looks in these places, first hit wins:

    1. ``path`` if set: a folder of the four IDX files, or an .npz (missing = error);
    2. ``$SWEEP_DATA_DIR/<name>/``, then the same with ``_`` → ``-`` (fashion-mnist);
    3. ``/usr/share/datasets/<name>/`` and its dash variant (Debian's dataset-* packages);
    4. ``tf.keras.datasets.<keras_name>.load_data()``, which needs the internet.
    """

    name: str = setting(dataclasses.MISSING, plain_name())
    path: str | None = None
    keras_name: str | None = None
    class_names: list | None = None
    train_limit: int | None = setting(None, at_least(1))
    test_limit: int | None = setting(None, at_least(1))

    @property
    def location(self) -> Path | None:
        """``path`` with ``~`` and environment variables expanded."""
        return Path(os.path.expandvars(self.path)).expanduser() if self.path else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.class_names or ())

    def _variants(self) -> list[str]:
        return list(dict.fromkeys([self.name, self.name.replace("_", "-")]))

    def candidates(self) -> list[Path]:
        """The folders searched when ``path`` is not set, in order."""
        roots = [Path(d).expanduser() for d in [os.environ.get(DATA_DIR_ENV)] if d]
        return [root / n for root in [*roots, SYSTEM_DATA_DIR] for n in self._variants()]

    def _locate(self) -> Path | None:
        if self.location is not None:
            if not self.location.exists():
                raise DataError(
                    f"dataset.path={self.location}: no such file or folder; expected a "
                    "folder of the four IDX files or a Keras-style .npz file"
                )
            return self.location
        return next((c for c in self.candidates() if c.is_dir()), None)

    def resolve(self) -> str:
        """Where ``load()`` would read from, without reading it."""
        found = self._locate()
        if found is not None:
            return str(found)
        if self.keras_name:
            return f"tf.keras.datasets.{self.keras_name} (download)"
        raise DataError(self._remedies("no local copy found and dataset.keras_name is not set"))

    def _remedies(self, why: str) -> str:
        folders = " or ".join(f"{n}/" for n in self._variants())
        return (
            f"dataset {self.name}: {why}. Searched {[str(c) for c in self.candidates()]}. "
            f"Fix one of: set dataset.path=<folder of the four IDX files or an .npz>; "
            f"or set {DATA_DIR_ENV} to a folder holding {folders} with "
            f"{', '.join(f'{n}.gz' for n in IDX_NAMES.values())}; "
            f"or `apt-get install dataset-fashion-mnist` (Fashion-MNIST, Debian/Ubuntu)"
        )

    def _download(self) -> Arrays:
        if not self.keras_name:
            raise DataError(self._remedies("no local copy found and dataset.keras_name is not set"))
        from sweep.backend import tf  # loads on first use: reading files never pays for it

        loader = getattr(tf.keras.datasets, self.keras_name, None)
        if loader is None:
            raise DataError(
                f"dataset.keras_name={self.keras_name!r} is not in tf.keras.datasets "
                "(valid e.g. mnist, fashion_mnist, cifar10)"
            )
        try:
            (x_train, y_train), (x_test, y_test) = loader.load_data()
        except Exception as exc:  # offline, proxy, bad checksum: all need the same remedies
            raise DataError(
                self._remedies(
                    f"downloading tf.keras.datasets.{self.keras_name} "
                    f"failed ({type(exc).__name__}: {exc})"
                )
            ) from exc
        where = {k: f"tf.keras.datasets.{self.keras_name}:{k}" for k in KEYS}
        return _check(dict(zip(KEYS, (x_train, y_train, x_test, y_test), strict=True)), where)

    def _limit(self, x: np.ndarray, y: np.ndarray, key: str, source: str) -> Arrays:
        limit = getattr(self, key)
        if limit is not None and limit > len(x):
            raise DataError(
                f"dataset.{key}={limit} is larger than the {len(x)} examples available in {source}"
            )
        return x[:limit], y[:limit]  # type: ignore[return-value]

    def load(self) -> Dataset:
        """Find, read, check, cut to the limits and scale the dataset."""
        start = time.perf_counter()
        found = self._locate()
        if found is None:
            source = f"tf.keras.datasets.{self.keras_name}"
            arrays = self._download()
        elif found.is_dir():
            source, arrays = str(found), load_idx_folder(found)
        elif found.suffix == ".npz":
            source, arrays = str(found), load_npz(found)
        else:
            raise DataError(f"dataset.path={found}: expected a folder of IDX files or an .npz")
        x_train, y_train = self._limit(arrays[0], arrays[1], "train_limit", source)
        x_test, y_test = self._limit(arrays[2], arrays[3], "test_limit", source)
        y_train, y_test = _labels(y_train, source), _labels(y_test, source)
        top = int(max(y_train.max(), y_test.max()))
        if self.names and top >= len(self.names):
            raise DataError(
                f"{source}: label {top} has no name in dataset.class_names "
                f"({len(self.names)} names given; need one per class)"
            )
        data = Dataset(
            self.name,
            _pixels(x_train, source),
            y_train,
            _pixels(x_test, source),
            y_test,
            self.names,
            source,
        )
        log.info(
            "dataset %s from %s: train %s, test %s, %d classes (%.2f s)",
            self.name,
            source,
            data.x_train.shape,
            data.x_test.shape,
            data.num_classes,
            time.perf_counter() - start,
        )
        return data
