"""Layers drawn by a slide view, bottom to top: slide image, then overlays."""

from gui.layers.annotation_layer import AnnotationLayer
from gui.layers.base import Layer
from gui.layers.disagreement_layer import DisagreementLayer
from gui.layers.grid_layer import GridLayer
from gui.layers.heatmap_layer import HeatmapLayer
from gui.layers.slide_layer import SlideLayer
from gui.layers.tile_preview_layer import TilePreviewLayer

__all__ = ["Layer", "SlideLayer", "AnnotationLayer", "GridLayer", "TilePreviewLayer", "HeatmapLayer",
           "DisagreementLayer"]
