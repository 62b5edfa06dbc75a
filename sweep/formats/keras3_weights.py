"""The weights of a Keras 3 model file, read layer by layer into the shapes Keras 2 expects.

Keras 3 stores a ``.keras`` file's weights by path (``layers/<class in snake case>/vars/0``)
and an ``.h5`` file's by layer name (``model_weights/<layer>/<weight>``). Each dataset's
declared shape is compared with the one the Keras 2 model gives that weight *before* its
data is read, so a dataset that declares a huge (compressed) shape is never inflated.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from sweep.formats.keras_model import KERAS_ZIP, SAVED_MODEL, ModelFileError, StoredModel

Shapes = dict[str, list[tuple[tuple[int, ...], Any]]]
"""Layer name -> the (shape, dtype) of each of its weights, in order."""


def _keras3_datasets(stored: StoredModel) -> tuple[Any, Callable[[str], list[Any] | None]]:
    """The open HDF5 file of a Keras 3 model's weights, and each layer's datasets in order."""
    import h5py

    if stored.kind == KERAS_ZIP:  # model.weights.h5: layers/<name>/vars/<0, 1, ...>
        with zipfile.ZipFile(io.BytesIO(stored.files["model.keras"])) as archive:
            blob = archive.read("model.weights.h5")  # its declared size was bounded
        h5 = h5py.File(io.BytesIO(blob), "r")

        def of_zip(name: str) -> list[Any] | None:
            group = h5.get(f"layers/{name}/vars")
            if group is None:
                return None
            return [group[k] for k in sorted(group, key=lambda k: int(k) if k.isdigit() else -1)]

        return h5, of_zip
    h5 = h5py.File(io.BytesIO(stored.files["model.h5"]), "r")  # model_weights/<name>/...
    weights = h5["model_weights"]

    def of_hdf5(name: str) -> list[Any] | None:
        group = weights.get(name)
        if group is None:
            return None
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get(
            "weight_names", [])]  # fmt: skip
        return [group[n] for n in names]

    return h5, of_hdf5


def keras3_weights(stored: StoredModel, expected: Shapes) -> dict[str, list[np.ndarray]]:
    """Each layer's weights from a Keras 3 file, by layer name, each checked against the
    shape Keras 2 gives it before its data is read (a lying dataset is never inflated)."""
    if stored.kind == SAVED_MODEL:
        raise ModelFileError(f"{stored.path}: a Keras 3 SavedModel folder; save it as .keras")
    try:
        h5, datasets = _keras3_datasets(stored)
        with h5:
            arrays: dict[str, list[np.ndarray]] = {}
            for name, shapes in expected.items():
                found = datasets(name)
                stored_shapes = [tuple(d.shape) for d in found or []]
                if stored_shapes != [shape for shape, _ in shapes]:
                    raise ModelFileError(
                        f"{stored.path}: layer {name!r} stores weights of shapes "
                        f"{stored_shapes}, not the {[s for s, _ in shapes]} its config gives"
                    )
                arrays[name] = [
                    np.asarray(d[()], dtype=dtype)
                    for d, (_, dtype) in zip(found, shapes, strict=True)
                ]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{stored.path}: its weights cannot be read ({exc})") from None
    return arrays
