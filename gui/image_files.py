"""Images the window saves (screenshots, exported views): encoded in memory, then written atomically."""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QBuffer, QByteArray, QIODevice
from PyQt5.QtGui import QImage, QPixmap

from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError


def save_image(image: QImage | QPixmap, path, fmt: str = "PNG", quality: int = -1) -> Path:
    """Write ``image`` to ``path`` in one step: a full disk leaves the earlier file (or none), never a part.

    Raises
    ------
    BiopsiaError
        When Qt cannot encode the image in ``fmt``.
    OSError
        When the file cannot be written (``err.filename`` names it; e.g. no space left).
    """
    path = Path(path)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    ok = image.save(buffer, fmt, quality)
    buffer.close()
    if not ok or data.isEmpty():
        raise BiopsiaError(f"{path}: could not encode the image as {fmt}")
    atomic_write_bytes(path, bytes(data))
    return path
