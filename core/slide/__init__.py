"""Whole-slide images: one reading interface (``SlideReader``) over several backends.

``open_slide(path)`` picks the backend: OpenSlide for vendor formats, tifffile
for OME-TIFF and TIFFs OpenSlide rejects, OpenCV for plain images.
"""

from core.slide.array_reader import ArrayReader
from core.slide.base import LABEL, MACRO, PRIVATE_ASSOCIATED, THUMBNAIL, SlideInfo, SlideReader
from core.slide.open import open_slide, supported_extensions

__all__ = [
    "SlideReader",
    "SlideInfo",
    "ArrayReader",
    "open_slide",
    "supported_extensions",
    "LABEL",
    "MACRO",
    "THUMBNAIL",
    "PRIVATE_ASSOCIATED",
]
