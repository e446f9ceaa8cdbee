"""Synthetic H&E-like whole-slide images with known tumour regions (for tests, demos and benchmarks).

``write_synthetic_slide`` plans the slide at low resolution (``layout``), places
every gland, nest and nucleus (``scene``, with ``shapes``), renders level-0 tiles on demand
(``render``, with stamps and textures from ``sprites``) and writes the pyramid
(``pyramid``, with label, macro and descriptions from ``associated``).
"""

from core.synth.generate import SynthResult, write_synthetic_slide

__all__ = ["SynthResult", "write_synthetic_slide"]
