"""Feed float images to a model's input tensor, whichever runtime runs it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_model_input(
    images: np.ndarray, shape: Sequence[int], dtype: np.dtype, scale: float, zero_point: int
) -> np.ndarray:
    """Reshape images to ``(N, *shape)`` and, for an integer input, quantize them.

    Integer models (full int8) expect ``round(x / scale + zero_point)``, clipped to
    the type's range: feeding raw floats or unscaled pixels silently ruins accuracy.
    """
    dtype = np.dtype(dtype)
    batch = np.asarray(images, dtype=np.float32).reshape((len(images), *(int(d) for d in shape)))
    if dtype.kind == "f":
        return batch.astype(dtype)
    if not scale:
        raise ValueError(f"integer input ({dtype}) without quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
