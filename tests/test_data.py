"""Dataset loading on real files: the committed MNIST/Fashion-MNIST subsets and
deliberately broken copies of them. Every error must name the offending file."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from sweep.formats.idx import write_idx
from sweep.groups.dataset import (
    DataError,
    Dataset,
    ImageDataset,
    load_idx_folder,
    load_npz,
    read_idx,
)
from sweep.settings import ConfigError, build

DATA = Path(__file__).parent / "data"
NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
KEYS = ("x_train", "y_train", "x_test", "y_test")


def copy_fixture(tmp_path: Path, folder: str = "mnist", name: str | None = None) -> Path:
    dest = tmp_path / (name or folder)
    shutil.copytree(DATA / folder, dest)
    return dest


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return ImageDataset("mnist", path=str(DATA / "mnist")).load()


@pytest.mark.parametrize("folder", ["mnist", "fashion-mnist"])
def test_fixture_folders_load(folder: str) -> None:
    data = ImageDataset(folder, path=str(DATA / folder)).load()
    assert data.x_train.shape == (3000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert data.y_train.shape == (3000,) and data.y_test.shape == (1000,)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.input_shape == (28, 28) and data.num_classes == 10
    assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_test))
    assert data.source == str(DATA / folder)


def test_class_names_set_num_classes() -> None:
    names = [f"c{i}" for i in range(12)]
    data = ImageDataset("mnist", path=str(DATA / "mnist"), class_names=names).load()
    assert data.class_names == tuple(names) and data.num_classes == 12
    with pytest.raises(DataError, match=r"mnist.*dataset.class_names"):
        ImageDataset("mnist", path=str(DATA / "mnist"), class_names=["a", "b"]).load()


def test_npz_round_trip(tmp_path: Path, mnist: Dataset) -> None:
    arrays = dict(zip(KEYS, load_idx_folder(DATA / "mnist"), strict=True))
    np.savez(tmp_path / "mnist.npz", **arrays)
    from_npz = ImageDataset("mnist", path=str(tmp_path / "mnist.npz")).load()
    for key in KEYS:
        np.testing.assert_array_equal(getattr(from_npz, key), getattr(mnist, key))
    assert from_npz.fingerprint() == mnist.fingerprint()


def test_npz_missing_key(tmp_path: Path) -> None:
    x, y, xt, _ = load_idx_folder(DATA / "mnist")
    np.savez(tmp_path / "partial.npz", x_train=x, y_train=y, x_test=xt)
    with pytest.raises(DataError, match=r"partial\.npz.*y_test.*x_train"):
        load_npz(tmp_path / "partial.npz")


def test_npz_garbage(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(DataError, match=r"junk\.npz"):
        load_npz(tmp_path / "junk.npz")


def test_missing_idx_file(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*train-images-idx3-ubyte") as err:
        load_idx_folder(folder)
    assert str(folder) in str(err.value)


def test_truncated_gzip(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    target = folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100_000])
    with pytest.raises(DataError, match=re.escape(str(target))):
        ImageDataset("mnist", path=str(folder)).load()


def test_raw_idx_matches_gzip(tmp_path: Path, mnist: Dataset) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in NAMES:
        (raw / name).write_bytes(gzip.decompress((DATA / "mnist" / f"{name}.gz").read_bytes()))
    # a browser-decompressed download keeps its .gz name: detect by content, not suffix
    shutil.copy(raw / NAMES[3], raw / f"{NAMES[3]}.gz")
    data = ImageDataset("mnist", path=str(raw)).load()
    assert data.fingerprint() == mnist.fingerprint()


def test_non_idx_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk-idx3-ubyte"
    junk.write_bytes(b"\x7f" + np.random.default_rng(1).bytes(4000))
    with pytest.raises(DataError, match=rf"{re.escape(str(junk))}: not an IDX file"):
        read_idx(junk)
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=r"empty\.gz: not an IDX file"):
        read_idx(tmp_path / "empty.gz")


def test_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "odd-idx1"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match=r"odd-idx1: unknown IDX type code 0x07.*0x08"):
        read_idx(path)


@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", "<i4", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_all_idx_types_round_trip(tmp_path: Path, dtype: str, suffix: str) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == "uint8":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / f"a{suffix}", array)
    back = read_idx(tmp_path / f"a{suffix}")
    assert back.dtype == array.dtype.newbyteorder("=") and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("count", [10**9, 10**6])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_header_claims_more_than_payload(tmp_path: Path, count: int, suffix: str) -> None:
    path = tmp_path / f"liar-idx3-ubyte{suffix}"
    payload = bytes([0, 0, 0x08, 3]) + np.asarray([count, 28, 28], ">u4").tobytes()
    payload += bytes(784 * 5)
    path.write_bytes(gzip.compress(payload) if suffix else payload)
    """The header's claim is checked against the payload before anything is allocated or
    decompressed for it: the peak stays far below what the header claims (784 MB or more)."""
    tracemalloc.start()
    with pytest.raises(DataError, match=rf"liar-idx3-ubyte{suffix}: .*{count}"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20


def test_payload_longer_than_header(tmp_path: Path) -> None:
    data = gzip.decompress((DATA / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    for path in (tmp_path / "long-idx1", tmp_path / "long-idx1.gz"):
        blob = data + b"\x01"
        path.write_bytes(gzip.compress(blob) if path.suffix else blob)
        with pytest.raises(DataError, match=rf"{path.name}: IDX header says shape \(1000,\)"):
            read_idx(path)


def test_images_labels_length_mismatch(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    labels = folder / "train-labels-idx1-ubyte.gz"
    write_idx(labels, read_idx(labels)[:2999])
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte.gz holds 3000 images but .*"
        r"train-labels-idx1-ubyte.gz holds 2999",
    ):
        load_idx_folder(folder)


def test_labels_must_be_1d_and_images_3d(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros((1000, 2), np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: labels must be 1-D"):
        load_idx_folder(folder)
    shutil.copy(DATA / "mnist" / "t10k-labels-idx1-ubyte.gz", folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((1000, 784), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: images must be"):
        load_idx_folder(folder)


def test_limits_take_the_first_examples(mnist: Dataset) -> None:
    data = ImageDataset("mnist", path=str(DATA / "mnist"), train_limit=100, test_limit=50).load()
    assert data.x_train.shape == (100, 28, 28) and data.y_test.shape == (50,)
    np.testing.assert_array_equal(data.x_train, mnist.x_train[:100])
    np.testing.assert_array_equal(data.y_test, mnist.y_test[:50])


def test_limit_larger_than_available() -> None:
    with pytest.raises(DataError, match=r"dataset.train_limit=5000 .* 3000 .*mnist"):
        ImageDataset("mnist", path=str(DATA / "mnist"), train_limit=5000).load()
    with pytest.raises(DataError, match=r"dataset.test_limit=1001 .* 1000 .*fashion-mnist"):
        ImageDataset("fashion_mnist", path=str(DATA / "fashion-mnist"), test_limit=1001).load()


@pytest.mark.parametrize("bad", [0, -1, True, "10", 2.5])
def test_limits_validated_by_the_schema(bad: object) -> None:
    """ImageDataset is a dataclass like every option: its schema check is not skipped."""
    with pytest.raises(
        ConfigError, match=r"^dataset.test_limit=.* is not valid: expected an integer"
    ):
        build("dataset", ImageDataset, {"name": "mnist", "test_limit": bad})


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_dataset_name_must_be_a_plain_name(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^dataset.name=.* is not valid: expected a non-empty"):
        build("dataset", ImageDataset, {"name": bad})


def test_resolution_via_env_and_dash_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_DATA_DIR", str(DATA))
    assert ImageDataset("mnist").resolve() == str(DATA / "mnist")
    fashion = ImageDataset("fashion_mnist", keras_name="fashion_mnist")
    assert fashion.resolve() == str(DATA / "fashion-mnist")
    data = fashion.load()
    assert data.source == str(DATA / "fashion-mnist") and data.name == "fashion_mnist"


def test_exact_name_before_dash_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_fixture(tmp_path, "mnist", "my_set")
    copy_fixture(tmp_path, "fashion-mnist", "my-set")
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path))
    assert ImageDataset("my_set").load().source == str(tmp_path / "my_set")


def test_path_takes_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_DATA_DIR", str(DATA))
    spec = ImageDataset("mnist", path=str(DATA / "fashion-mnist"))
    assert spec.resolve() == str(DATA / "fashion-mnist")
    assert spec.load().source == str(DATA / "fashion-mnist")


def test_missing_path_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_DATA_DIR", str(DATA))
    with pytest.raises(DataError, match=re.escape(f"dataset.path={tmp_path / 'nope'}: no such")):
        ImageDataset("mnist", path=str(tmp_path / "nope")).load()


def test_nothing_found_names_the_remedies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as err:
        ImageDataset("no_such_set").load()
    message = str(err.value)
    for part in (
        str(tmp_path / "no_such_set"),
        str(tmp_path / "no-such-set"),
        "dataset.path=",
        "SWEEP_DATA_DIR",
        "apt-get install dataset-fashion-mnist",
        "train-images-idx3-ubyte.gz",
    ):
        assert part in message


def test_fingerprint_stable_and_sensitive(mnist: Dataset) -> None:
    again = ImageDataset("other-name", path=str(DATA / "mnist")).load()
    assert len(mnist.fingerprint()) == 64 and again.fingerprint() == mnist.fingerprint()
    x = mnist.x_train.copy()
    x[0, 0, 0] = 0.5
    fields = dict(
        name="m",
        x_train=mnist.x_train,
        y_train=mnist.y_train,
        x_test=mnist.x_test,
        y_test=mnist.y_test,
    )
    prints = {
        Dataset(**fields).fingerprint(),
        Dataset(**{**fields, "x_train": x}).fingerprint(),
        Dataset(**fields, class_names=("a",) * 10).fingerprint(),
        Dataset(
            **{**fields, "x_train": mnist.x_train[:-1], "y_train": mnist.y_train[:-1]}
        ).fingerprint(),
        Dataset(**{**fields, "x_train": mnist.x_train.reshape(3000, 784)}).fingerprint(),
    }
    assert len(prints) == 5 and mnist.fingerprint() in prints


def test_load_from_hydra_config() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "sweep.groups.dataset.ImageDataset",
            "name": "mnist",
            "path": str(DATA / "mnist"),
            "train_limit": 10,
            "test_limit": 10,
            "class_names": [str(i) for i in range(10)],
        }
    )
    data = instantiate(cfg).load()
    assert data.x_train.shape == (10, 28, 28) and data.class_names == tuple("0123456789")


def test_importing_does_not_import_tensorflow() -> None:
    code = "import sys, sweep.groups.dataset; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


class _Marker:
    """Unpickling this object would write a file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


def test_npz_with_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.txt"
    arrays = {k: np.zeros((2, 2), np.uint8) for k in ("x_train", "x_test")}
    arrays["y_train"] = np.array([_Marker(str(marker)), 1], dtype=object)
    arrays["y_test"] = np.zeros(2, np.uint8)
    np.savez(tmp_path / "evil.npz", **arrays)  # object arrays are stored as pickles
    with pytest.raises(DataError, match=r"evil.npz: not a readable .npz"):
        load_npz(tmp_path / "evil.npz")
    assert not marker.exists()
