"""Reading and writing IDX files, the format MNIST and Fashion-MNIST ship in.

Offline machines get their data as these files (gzip or raw), so the parser is
the trust boundary: a file is checked against its own header before any array
is built, and never more memory is allocated than the file actually holds.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sweep.errors import UserError

# IDX type code -> big-endian numpy dtype (the format's byte order).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_VALID = "valid codes: " + ", ".join(f"0x{c:02X} ({d.name})" for c, d in IDX_DTYPES.items())

# A header claiming more data than this is refused before reading (a gzip bomb
# with a matching header would otherwise be inflated in full).
MAX_PAYLOAD_BYTES = 4 * 2**30
_CHUNK = 2**24
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(UserError):
    """A dataset file or folder is missing, malformed or inconsistent."""


def _open(path: Path) -> BinaryIO:
    """Open raw or gzip by content, not suffix: browsers often un-gzip '.gz' downloads."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def _read_exact(stream: BinaryIO, limit: int) -> bytearray:
    """Read at most ``limit`` bytes in chunks, so a lying size never pre-allocates."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = stream.read(min(_CHUNK, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a native-byte-order array.

    Raises DataError naming the file if it is not IDX, is truncated, or its
    header's dimensions disagree with the payload size in either direction.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected an IDX file, gzip or raw)")
    try:
        with _open(path) as stream:
            head = stream.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00":
                raise DataError(
                    f"{path}: not an IDX file (first bytes {head.hex() or 'empty'}; an IDX "
                    "file starts with 00 00, a type code and the number of dimensions)"
                )
            code, ndim = head[2], head[3]
            if code not in IDX_DTYPES:
                raise DataError(f"{path}: unknown IDX type code 0x{code:02X}; {_VALID}")
            if ndim == 0:
                raise DataError(f"{path}: IDX header declares 0 dimensions (need at least 1)")
            dims_raw = stream.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
            shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            dtype = IDX_DTYPES[code]
            expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if expected > MAX_PAYLOAD_BYTES:
                raise DataError(
                    f"{path}: header shape {shape} means {expected:,} bytes of data, over the "
                    f"{MAX_PAYLOAD_BYTES:,}-byte limit (sweep.formats.idx.MAX_PAYLOAD_BYTES)"
                )
            if not isinstance(stream, gzip.GzipFile):
                actual = os.fstat(stream.fileno()).st_size - 4 - 4 * ndim
                if actual != expected:
                    raise DataError(_size_msg(path, shape, dtype, expected, actual))
            payload = _read_exact(stream, expected + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(payload) != expected:
        more = " or more" if len(payload) > expected else ""
        raise DataError(_size_msg(path, shape, dtype, expected, len(payload), more))
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _size_msg(
    path: Path, shape: tuple, dtype: np.dtype, expected: int, actual: int, more: str = ""
) -> str:
    return (
        f"{path}: IDX header says shape {shape} of {dtype.name} = {expected:,} bytes of data, "
        f"but the file holds {actual:,}{more} bytes (header and payload must agree exactly)"
    )


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX, gzip-compressed if ``path`` ends in .gz (reproducible bytes)."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise DataError(f"{path}: cannot write {array.dtype} array of shape {array.shape} as IDX")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(IDX_DTYPES[code], copy=False).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
