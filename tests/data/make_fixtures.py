"""Regenerate the small real-data fixtures in this folder.

Tests must run anywhere (CI, a laptop) without /work/shared or the internet,
so they use the first 3000 train and first 1000 test examples of MNIST and
Fashion-MNIST, written as the same four IDX gzip files the full datasets ship
as. The writer is self-contained (stdlib + numpy) so that regenerating does not
depend on the code under test; gzip mtime is 0 so the bytes are reproducible.

    python tests/data/make_fixtures.py [--source /work/shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import logging
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FOLDERS = ("mnist", "fashion-mnist")
LIMITS = {"train": 3000, "t10k": 1000}
log = logging.getLogger("make_fixtures")


def read_ubyte_idx(path: Path) -> np.ndarray:
    """Minimal reader for the (trusted) ubyte IDX source files."""
    data = gzip.decompress(path.read_bytes())
    if data[:3] != b"\x00\x00\x08":
        raise SystemExit(f"{path}: not a ubyte IDX file")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_ubyte_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for folder in FOLDERS:
        (HERE / folder).mkdir(exist_ok=True)
        for split, limit in LIMITS.items():
            for kind in ("images-idx3", "labels-idx1"):
                name = f"{split}-{kind}-ubyte.gz"
                array = read_ubyte_idx(args.source / folder / name)[:limit]
                write_ubyte_idx(HERE / folder / name, array)
                size = (HERE / folder / name).stat().st_size
                log.info("%s/%s: %s, %d bytes", folder, name, array.shape, size)


if __name__ == "__main__":
    main()
