"""core.models.framework_check: IDX and CIFAR-10 readers on files written here, and a quick benchmark run."""

import gzip

import numpy as np
import pytest

from core.errors import DatasetError
from core.models.framework_check import load_framework_data, read_cifar10, read_idx, read_mnist, validate_framework


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _patterns(n_per_class, seed, size=28):
    """Three learnable 'digits': a vertical bar, a horizontal bar, a square ring, at random places."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(3):
        for _ in range(n_per_class):
            img = rng.integers(0, 40, (size, size)).astype(np.uint8)
            a, b = rng.integers(4, size - 10, 2)
            if label == 0:
                img[2:-2, a:a + 3] = 250
            elif label == 1:
                img[a:a + 3, 2:-2] = 250
            else:
                img[a:a + 9, b:b + 9] = 250
                img[a + 2:a + 7, b + 2:b + 7] = 20
            images.append(img)
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.uint8)


def _mnist_folder(folder, compress):
    for split, n, seed in (("train", 40, 0), ("t10k", 12, 1)):
        images, labels = _patterns(n, seed)
        _write_idx(folder / f"{split}-images-idx3-ubyte{'.gz' if compress else ''}", images, compress)
        _write_idx(folder / f"{split}-labels-idx1-ubyte{'.gz' if compress else ''}", labels, compress)
    return folder


@pytest.mark.parametrize("compress", [False, True])
def test_read_mnist(tmp_path, compress):
    _mnist_folder(tmp_path, compress)
    images, labels = read_mnist(tmp_path, "train")
    expected_images, expected_labels = _patterns(40, 0)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_truncated_idx_is_a_dataset_error(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    _write_idx(path, np.arange(10, dtype=np.uint8), False)
    assert read_idx(path).tolist() == list(range(10))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)


def test_read_cifar10(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(5, -1)  # R plane, G plane, B plane
    records = np.concatenate([labels[:, None], planes], axis=1)
    (tmp_path / "data_batch_1.bin").write_bytes(records[:3].tobytes())
    (tmp_path / "data_batch_2.bin").write_bytes(records[3:].tobytes())
    (tmp_path / "test_batch.bin").write_bytes(records[:2].tobytes())
    got_images, got_labels = read_cifar10(tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    train, test = load_framework_data("cifar10", tmp_path)
    assert train.classes == ["automobile", "cat", "deer", "dog"]  # only labels present, in order
    (tmp_path / "test_batch.bin").write_bytes(records[:2].tobytes()[:-1])
    with pytest.raises(DatasetError, match="whole number"):
        read_cifar10(tmp_path, "test")


def test_validate_framework_learns(tmp_path):
    _mnist_folder(tmp_path, compress=True)
    accuracy = validate_framework("fashion-mnist", tmp_path, epochs=4, batch_size=16, device="cpu")
    assert accuracy > 0.9


def test_unknown_kind(tmp_path):
    with pytest.raises(DatasetError, match="mnist, fashion-mnist or cifar10"):
        load_framework_data("imagenet", tmp_path)
