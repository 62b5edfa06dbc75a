"""``dataset=image_folder`` on real PNG files written from the committed MNIST subset, and on
deliberately broken copies: every refusal names the file or the folder."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.config import compose
from helpers.own_model import DIGITS, mnist_arrays, write_image_folder
from PIL import Image

from sweep.formats.idx import DataError
from sweep.groups.image_folder import ImageFolder
from sweep.pipeline.components import instantiate_components
from sweep.settings import ConfigError


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("split") / "digits", 12, 4)


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("flat") / "digits", 12, 3, split=False)


def test_train_and_test_folders_load_as_written(split_folder: Path) -> None:
    data = ImageFolder(path=str(split_folder)).load()
    _, _, x_test, y_test = mnist_arrays(12, 4)
    names = sorted(DIGITS)  # class index = position of the folder name, sorted (as Keras does)
    assert data.class_names == tuple(names) and data.num_classes == 10
    assert data.x_train.shape == (120, 28, 28, 1) and data.x_test.shape == (40, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    # Every written image comes back with its pixels and its class, in some seeded order.
    written = {(names.index(DIGITS[label]), image.tobytes()) for image, label in zip(
        x_test, y_test, strict=True)}  # fmt: skip
    read = {
        (int(label), np.rint(image[..., 0] * 255).astype(np.uint8).tobytes())
        for image, label in zip(data.x_test, data.y_test, strict=True)
    }
    assert read == written
    assert np.bincount(data.y_train, minlength=10).tolist() == [12] * 10
    again = ImageFolder(path=str(split_folder)).load()
    assert again.fingerprint() == data.fingerprint()  # the same folder, the same arrays


def test_one_folder_per_class_is_split_by_seed(flat_folder: Path) -> None:
    first = ImageFolder(path=str(flat_folder), test_fraction=0.25, split_seed=0).load()
    same = ImageFolder(path=str(flat_folder), test_fraction=0.25, split_seed=0).load()
    other = ImageFolder(path=str(flat_folder), test_fraction=0.25, split_seed=1).load()
    assert first.fingerprint() == same.fingerprint()
    assert first.fingerprint() != other.fingerprint()
    # 15 images per class: ceil(0.25 × 15) = 4 for test in every class, the rest for training
    assert np.bincount(first.y_test, minlength=10).tolist() == [4] * 10
    assert np.bincount(first.y_train, minlength=10).tolist() == [11] * 10
    train = {image.tobytes() for image in first.x_train}
    assert not any(image.tobytes() in train for image in first.x_test)


def test_limits_take_every_class(split_folder: Path) -> None:
    data = ImageFolder(path=str(split_folder), train_limit=50, test_limit=20).load()
    assert data.x_train.shape[0] == 50 and data.x_test.shape[0] == 20
    assert len(np.unique(data.y_train)) >= 8  # a seeded order, not the first class's files
    with pytest.raises(DataError, match=r"dataset.train_limit=500 is larger than the 120"):
        ImageFolder(path=str(split_folder), train_limit=500).load()


def test_rgb_resize_and_value_range(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "rgb", 3, 2, rgb=True, size=40)
    data = ImageFolder(path=str(root), image_size=[32, 24], color="rgb").load()
    assert data.x_train.shape == (30, 32, 24, 3) and data.input_shape == (32, 24, 3)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    wide = ImageFolder(path=str(root), image_size=[32, 24], color="rgb", value_range=[0, 255])
    np.testing.assert_allclose(wide.load().x_train, data.x_train * 255, rtol=1e-5, atol=1e-3)
    gray = ImageFolder(path=str(root), image_size=20).load()
    assert gray.x_train.shape == (30, 20, 20, 1)


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_a_corrupt_image_is_named(split_folder: Path, tmp_path: Path) -> None:
    root = _copy(split_folder, tmp_path)
    bad = sorted((root / "test" / "seven").iterdir())[1]
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated PNG
    with pytest.raises(DataError, match=rf"{re.escape(str(bad))}: not a readable PNG or JPEG"):
        ImageFolder(path=str(root)).load()
    bad.write_bytes(b"just text, named .png")
    with pytest.raises(DataError, match=re.escape(str(bad))):
        ImageFolder(path=str(root)).load()


def test_only_png_and_jpeg_contents_are_read(split_folder: Path, tmp_path: Path) -> None:
    root = _copy(split_folder, tmp_path)
    gif = root / "train" / "one" / "disguised.png"
    Image.new("L", (28, 28)).save(gif, format="GIF")
    with pytest.raises(DataError, match=re.escape(str(gif))):
        ImageFolder(path=str(root)).load()
    gif.unlink()
    jpeg = root / "train" / "one" / "photo.jpg"
    Image.new("RGB", (50, 30), (200, 10, 10)).save(jpeg, format="JPEG")
    (root / "train" / "one" / "notes.txt").write_text("not an image: left out with a warning")
    data = ImageFolder(path=str(root)).load()
    assert data.x_train.shape[0] == 121


def _png_declaring(width: int, height: int) -> bytes:
    """A real 1×1 PNG whose header (IHDR, with a valid CRC) declares width × height."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (8_000, r"declares 8000×8000 pixels, over the 40,000,000-pixel limit"),  # ours
        (50_000, r"refused undecoded, a decompression bomb"),  # Pillow's own, in its header
    ],
)
def test_a_decompression_bomb_is_refused_before_decoding(
    split_folder: Path, tmp_path: Path, side: int, message: str
) -> None:
    root = _copy(split_folder, tmp_path)
    bomb = root / "train" / "two" / "bomb.png"
    bomb.write_bytes(_png_declaring(side, side))  # up to 2.5 billion pixels in 70 bytes
    with pytest.raises(DataError, match=rf"{re.escape(str(bomb))}: {message}"):
        ImageFolder(path=str(root)).load()


def test_every_class_needs_test_images(split_folder: Path, tmp_path: Path) -> None:
    root = _copy(split_folder, tmp_path)
    for image in (root / "test" / "three").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"test/three: no \.png, \.jpg or \.jpeg images"):
        ImageFolder(path=str(root)).load()
    (root / "test" / "three").rmdir()
    with pytest.raises(DataError, match=r"class 'three' has no test images"):
        ImageFolder(path=str(root)).load()


def test_a_class_too_small_to_split_is_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "flat", 1, 0, split=False)
    with pytest.raises(DataError, match=r"flat/eight: 1 image\(s\) cannot be split"):
        ImageFolder(path=str(root)).load()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, r"not a folder"),
        (lambda root: (root / "only").mkdir(parents=True), r"found 1 class folder"),
        (lambda root: (root / "train" / "a").mkdir(parents=True), r"has train/ but no test/"),
    ],
    ids=["missing", "one class", "train without test"],
)
def test_folder_layout_errors_name_the_folder(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(DataError, match=rf"{re.escape(str(root))}.*{message}"):
        ImageFolder(path=str(root)).load()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        (["dataset.color=cmyk"], "dataset.color"),
        (["dataset.image_size=0"], "dataset.image_size"),
        (["dataset.image_size=[28,28,3]"], "dataset.image_size"),
        (["dataset.value_range=[1,0]"], "dataset.value_range"),
        (["dataset.test_fraction=1.5"], "dataset.test_fraction"),
    ],
)
def test_bad_settings_name_the_setting(overrides: list[str], setting: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(setting)):
        instantiate_components(compose(["dataset=image_folder", *overrides]))


def test_a_missing_path_names_the_setting() -> None:
    parts = instantiate_components(compose(["dataset=image_folder"]))
    with pytest.raises(DataError, match=r"dataset.path is not set"):
        parts.dataset.load()
