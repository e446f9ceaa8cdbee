"""Check the MXNet set-up on a public benchmark: MNIST, Fashion-MNIST (IDX files) or CIFAR-10 (binary).

A pathologist never needs this; it answers "does training work on this machine?" with a known data set.
The readers take the files as distributed (IDX optionally gzipped); nothing is downloaded.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np

from core.errors import DatasetError
from core.models.train import train
from core.tiles.arrays import TileArrays

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR_RECORD = 1 + 32 * 32 * 3


def _open_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: unreadable ({exc}); download the file again") from exc


def read_idx(path) -> np.ndarray:
    """Read an IDX file (uint8 data, gzipped or not) into an array of its declared shape.

    Raises
    ------
    DatasetError
        When the magic number, data type or length is wrong.
    """
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: IDX data type 0x{data[2]:02x} is not unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise DatasetError(f"{path}: {len(data)} bytes but its header promises {expected}; the file is "
                           "truncated or damaged, download it again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz", folder / name.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder}: {name} (or {name}.gz) is missing")


def read_mnist(folder, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format split (also Fashion-MNIST): ``(images uint8 (N, 28, 28), labels uint8 (N,))``."""
    folder = Path(folder)
    images_name, labels_name = IDX_FILES[split]
    images, labels = read_idx(_find(folder, images_name)), read_idx(_find(folder, labels_name))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def read_cifar10(folder, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary batches: ``(images uint8 RGB (N, 32, 32, 3), labels uint8 (N,))``.

    ``split="train"`` reads ``data_batch_*.bin``, ``"test"`` reads ``test_batch.bin``.
    """
    folder = Path(folder)
    files = sorted(folder.glob("data_batch_*.bin")) if split == "train" else [folder / "test_batch.bin"]
    files = [f for f in files if f.is_file()]
    if not files:
        raise DatasetError(f"{folder}: no CIFAR-10 {split} batches (data_batch_N.bin / test_batch.bin)")
    images, labels = [], []
    for file in files:
        data = _open_bytes(file)
        if len(data) % CIFAR_RECORD:
            raise DatasetError(f"{file}: {len(data)} bytes is not a whole number of {CIFAR_RECORD}-byte records")
        records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD)
        labels.append(records[:, 0])
        # Each record stores the red plane, then green, then blue, each 32x32 row-major.
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(images), np.concatenate(labels)


def _class_names(kind: str, folder: Path) -> list[str]:
    if kind == "fashion-mnist":
        return FASHION_CLASSES
    if kind == "mnist":
        return [str(d) for d in range(10)]
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        names = [ln.strip() for ln in meta.read_text().splitlines() if ln.strip()]
        if names:
            return names
    return CIFAR10_CLASSES


def load_framework_data(kind: str, folder):
    """Train and test `core.tiles.arrays.TileArrays` for ``kind`` in ``mnist``, ``fashion-mnist``, ``cifar10``."""
    folder = Path(folder)
    if kind in ("mnist", "fashion-mnist"):
        reader = read_mnist
    elif kind == "cifar10":
        reader = read_cifar10
    else:
        raise DatasetError(f"unknown benchmark {kind!r}; choose mnist, fashion-mnist or cifar10")
    names = _class_names(kind, folder)
    (tr_x, tr_y), (te_x, te_y) = reader(folder, "train"), reader(folder, "test")
    if tr_x.ndim == 3:  # grey → RGB, the networks take three channels
        tr_x, te_x = (np.repeat(a[..., None], 3, axis=-1) for a in (tr_x, te_x))
    present = np.unique(np.concatenate([tr_y, te_y]))
    if present.max() >= len(names):
        raise DatasetError(f"{folder}: label {int(present.max())} but only {len(names)} class names")
    remap = np.full(256, -1, np.int64)
    remap[present] = np.arange(present.size)
    classes = [names[i] for i in present]
    return (TileArrays(np.ascontiguousarray(tr_x), remap[tr_y], classes),
            TileArrays(np.ascontiguousarray(te_x), remap[te_y], classes))


def validate_framework(kind: str, folder, epochs: int = 2, batch_size: int = 64, max_train: int | None = None,
                       device: str = "auto", arch: str = "cnn", progress=None, should_stop=None) -> float:
    """Train on a benchmark's training split and return accuracy on its test split.

    Parameters
    ----------
    kind : {"mnist", "fashion-mnist", "cifar10"}
    folder : path-like
        Folder holding the files as distributed.
    epochs, batch_size : int
    max_train : int, optional
        Use only the first ``max_train`` training images (a quick check).
    device, arch, progress, should_stop
        As for `core.models.train.train`.

    Returns
    -------
    float
        Test accuracy after the last epoch (the test split is never used to pick an epoch).
    """
    train_data, test_data = load_framework_data(kind, folder)
    if max_train:
        train_data = TileArrays(train_data.images[:max_train], train_data.labels[:max_train], train_data.classes)
    with tempfile.TemporaryDirectory(prefix="biopsia-check-") as out:
        result = train(train_data, test_data, out, arch=arch, epochs=epochs, batch_size=batch_size,
                       device=device, augment=False, early_stopping_patience=None, progress=progress,
                       should_stop=should_stop)
    if not result.history:
        raise DatasetError("the check was cancelled before an epoch finished")
    return float(result.history[-1]["accuracy"])
