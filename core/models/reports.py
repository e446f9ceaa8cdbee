"""What training reports, and the architectures' names, without MXNet.

The window imports these when it builds the training panel; `core.models.train` and `core.models.zoo` load
MXNet (4 s of imports on 2 busy cores), which the panel must not wait for on the window's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The architectures `core.models.zoo.ARCHS` builds, by name (the default first).
ARCH_NAMES = ("cnn", "resnet18")


@dataclass
class ProgressEvent:
    """One report from training: after each batch (``metrics`` None) or each epoch (``metrics`` set)."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    metrics: dict | None = None


@dataclass
class TrainResult:
    """What `train` did: ``bundle`` is the best checkpoint's folder (None if no epoch finished).

    The best epoch has the lowest validation loss; ``best_score`` is its validation AUC (accuracy
    for more than two classes). ``threshold`` and ``thresholds`` are the operating threshold chosen on
    the best epoch's validation probabilities and how (`core.models.thresholds.choose_thresholds`), as
    recorded in the bundle's ``model.json``; None for more than two classes.
    """

    bundle: Path | None
    best_epoch: int | None
    best_score: float | None
    epochs_run: int
    history: list[dict]
    cancelled: bool = False
    stopped_early: bool = False
    device: str = ""
    threshold: float | None = None
    thresholds: dict | None = None
    onnx: dict | None = None  # the model.onnx check (`core.models.onnx_export.OnnxCheck.to_json`), or {"error": why}
    int8: dict | None = None  # the INT8 variant's summary (`core.models.quantize.quantize_bundle`), or {"error": why}
