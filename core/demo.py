"""The bundled demo case: a synthetic slide with known tumour, made on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core.paths import cache_dir

DEMO_SEED = 10  # five tissue fragments, three tumour regions (about 12 % of the tissue)
#: The bundled demo model (`make demo-model`): trained on synthetic tissue, not for diagnosis.
DEMO_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo-model"
DEMO_SIZE = (24000, 18000)
DEMO_MPP = 0.5


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
