"""The bundled demo case: a synthetic slide with known tumour, made on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core.paths import cache_dir

DEMO_SEED = 10  # five tissue fragments, three tumour regions (about 12 % of the tissue)
#: The bundled demo model (`make demo-model`): trained on synthetic tissue, not for diagnosis.
DEMO_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo-model"
#: What the card, the command line and the window say of the demo model (one text, measured by
#: ``bench/real_tissue.py --demo``: the demo model's own 128 px tiles at 1 µm/px, its threshold 0.5).
DEMO_MODEL_STATEMENT = (
    "The demo model was trained on synthetic tissue only and is not meaningful on real slides (on real H&E: "
    "AUC 0.81 on lymph-node metastases, 0.94 on lung patches). For real slides, train a model on your own "
    "marks (Model \u25b8 Train\u2026; README, \"Real tissue\").")
DEMO_SIZE = (24000, 18000)
DEMO_MPP = 0.5


def is_demo_model(path) -> bool:
    """Whether ``path`` is the bundled demo model (its folder or a bundle inside it)."""
    if path is None:
        return False
    demo = DEMO_MODEL.resolve()
    path = Path(path).resolve()
    return path == demo or demo in path.parents


def demo_slide_path() -> Path:
    return cache_dir() / "demo" / f"demo-case-seed{DEMO_SEED}.tiff"


def demo_slide_exists() -> bool:
    path = demo_slide_path()
    return path.exists() and path.with_suffix(".geojson").exists()


def ensure_demo_slide(progress: Callable[[int, int], None] | None = None) -> Path:
    """The demo slide's path, generating it (and its ``.geojson`` tumour marks) if missing."""
    path = demo_slide_path()
    if demo_slide_exists():
        return path
    from core.synth import write_synthetic_slide  # scipy and skimage: about 0.3 s, only when it must be made

    path.parent.mkdir(parents=True, exist_ok=True)
    write_synthetic_slide(path, seed=DEMO_SEED, width=DEMO_SIZE[0], height=DEMO_SIZE[1], mpp=DEMO_MPP,
                          progress=progress)
    return path
