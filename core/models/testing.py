"""Test a saved model on labelled tiles (a dataset split or a patch folder made elsewhere).

The network runs on the model thread (`core.models.engine`); batches are normalised there as they go.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from core.errors import ModelError
from core.metrics import BinaryMetrics
from core.models.bundle import default_threshold, describe_threshold, read_info
from core.models.engine import engine as model_thread


def check_compatible(info, tiles, where: str = "the tiles") -> None:
    """Raise ModelError when a model cannot classify ``tiles`` (tile size or number of classes differ)."""
    size = tiles.images.shape[1:3]
    if size != (info.tile_px, info.tile_px):
        raise ModelError(f"the model takes {info.tile_px} x {info.tile_px} px tiles but {where} are "
                         f"{size[1]} x {size[0]} px; make a dataset with --tile {info.tile_px}")
    if len(tiles.classes) != len(info.classes):
        raise ModelError(f"the model has {len(info.classes)} classes {info.classes} but {where} have "
                         f"{len(tiles.classes)} {tiles.classes}")


def predict_tiles(model_dir, tiles, device: str = "auto", batch_size: int = 128,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, engine: str = "mxnet",
                  precision: str = "fp32") -> tuple[np.ndarray, str]:
    """Class probabilities ``(N, classes)`` of a bundle on `core.tiles.arrays.TileArrays`, and the device used.

    ``engine`` and ``precision`` choose the network's variant (`core.inference.engines.load_model`).

    Returns ``(None, device)`` when ``should_stop()`` turned true.

    Raises
    ------
    ModelError
        An unreadable bundle, or tiles it cannot take.
    """
    from core.inference.engines import check_engine, load_model

    info = read_info(model_dir)
    check_compatible(info, tiles)
    check_engine(info, model_dir, engine, precision)

    def run():
        model = load_model(model_dir, device, engine, precision)
        out = []
        for start in range(0, len(tiles), batch_size):
            if should_stop is not None and should_stop():
                return None, model.describe()
            out.append(model.predict(tiles.images[start:start + batch_size]))
            if progress is not None:
                progress(min(start + batch_size, len(tiles)), len(tiles))
        return np.concatenate(out), model.describe()

    return model_thread().run(run)


def test_model(model_dir, tiles, device: str = "auto", threshold: float | None = None, batch_size: int = 128,
               progress=None, engine: str = "mxnet", precision: str = "fp32") -> dict:
    """Confusion matrix and screening metrics of a model on labelled tiles.

    For two classes the second is "positive" (tumour): the result holds `BinaryMetrics.as_dict` values
    at ``threshold`` (None: the model's, `core.models.bundle.default_threshold`) plus ``threshold_source``
    ("given", "model" or why 0.5), ``threshold_text`` (a line saying so), ``table`` (the study's 2x2
    layout) and the sensitivity-0.95/0.99 thresholds; for more classes, accuracy and the full confusion
    matrix (rows true class, columns predicted).
    """
    info = read_info(model_dir)
    text = describe_threshold(info, threshold)
    threshold, source = (threshold, "given") if threshold is not None else default_threshold(info)
    probs, used = predict_tiles(model_dir, tiles, device, batch_size, progress, engine=engine, precision=precision)
    labels = tiles.labels
    result = {"model": str(model_dir), "device": used, "tiles": len(tiles), "classes": list(info.classes),
              "counts": dict(zip(tiles.classes, np.bincount(labels, minlength=len(tiles.classes)).tolist()))}
    predicted = probs.argmax(1)
    n = len(info.classes)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    result["confusion_matrix"] = matrix.tolist()
    if n == 2:
        metrics = BinaryMetrics(labels, probs[:, 1], threshold)
        result.update(metrics.as_dict())
        result.update(threshold_source=source, threshold_text=text)
        result["table"] = metrics.confusion_table_text()
        result["threshold_for_sensitivity"] = {str(t): metrics.threshold_for_sensitivity(t) for t in (0.95, 0.99)}
    else:
        result["accuracy"] = float(np.mean(predicted == labels))
    return result
