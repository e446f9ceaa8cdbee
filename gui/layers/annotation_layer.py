"""Doctors' marks drawn over the slide: class-coloured fill and outline, selection, the tool's shape in progress."""

from __future__ import annotations

from typing import Callable

from PyQt5.QtCore import QRectF, Qt
from PyQt5.QtGui import QBrush, QColor, QImage, QPainter, QPen, QTransform

from core.annotations.proposals import is_draft
from core.annotations.store import AnnotationStore
from core.annotations.vertices import parts_of, rings_of
from core.view.viewport import Viewport
from gui.layers.annotation_paths import PathCache, zoom_bucket
from gui.layers.base import Layer

#: Marks smaller than this on screen (both sides, in pixels) are not drawn.
MIN_SCREEN_SIZE = 1.0
#: Side of a vertex handle in screen pixels.
HANDLE_PX = 7
#: At most this many vertex handles are drawn (a traced outline may have thousands).
MAX_HANDLES = 4000


class AnnotationLayer(Layer):
    """Draws an :class:`AnnotationStore`, only what is visible, at every zoom.

    ``selection`` (ids), ``show_vertices`` and ``overlay`` (a callable painting the active tool's shape in
    progress, in screen coordinates) are set by the view.
    """

    def __init__(self, store: AnnotationStore | None = None):
        super().__init__("Annotations")
        self.fill = True
        self.fill_opacity = 0.3
        self.outline = True
        self.outline_width = 2.0
        self.hidden_classes: set[str] = set()
        self.selection: frozenset[str] = frozenset()
        self.show_vertices = False
        self.overlay: Callable[[QPainter, Viewport], None] | None = None
        self.paths = PathCache()
        self.painted_count = 0  # annotations drawn by the last paint (tests, benchmarks)
        self._image: QImage | None = None
        self._image_key = None
        self._store: AnnotationStore | None = None
        self.set_store(store if store is not None else AnnotationStore())

    @property
    def store(self) -> AnnotationStore:
        return self._store

    def set_store(self, store: AnnotationStore) -> None:
        if self._store is not None:
            self._store.remove_listener(self._on_edit)
        self._store = store
        store.add_listener(self._on_edit)
        self.paths.clear()
        self._image_key = None
        self.changed.emit()

    def _on_edit(self, _edit) -> None:
        self.changed.emit()

    def dispose(self) -> None:
        self._store.remove_listener(self._on_edit)
        self.paths.clear()
        self._image = self._image_key = None

    # -- display options -----------------------------------------------------------------
    def set_options(self, **options) -> None:
        """Change ``fill``, ``fill_opacity``, ``outline``, ``outline_width`` and repaint."""
        for name, value in options.items():
            if name not in ("fill", "fill_opacity", "outline", "outline_width"):
                raise AttributeError(f"no display option {name!r}")
            setattr(self, name, value)
        self.changed.emit()

    def set_class_visible(self, class_name: str, visible: bool) -> None:
        (self.hidden_classes.discard if visible else self.hidden_classes.add)(class_name)
        self.changed.emit()

    def set_selection(self, ids) -> None:
        self.selection = frozenset(ids)
        self.changed.emit()

    # -- painting ---------------------------------------------------------------------------
    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        # The marks are drawn once into an image and reused while nothing they depend on changes: tiles
        # arriving and a brush cursor moving repaint the view many times a second.
        ratio = painter.device().devicePixelRatioF() if painter.device() is not None else 1.0
        key = (viewport, ratio, id(self._store), self._store.revision, self.selection, self.show_vertices,
               self.fill, self.fill_opacity, self.outline, self.outline_width, frozenset(self.hidden_classes))
        if key != self._image_key:
            self._image = QImage(round(viewport.screen_w * ratio), round(viewport.screen_h * ratio),
                                 QImage.Format_ARGB32_Premultiplied)
            self._image.setDevicePixelRatio(ratio)
            self._image.fill(Qt.transparent)
            image_painter = QPainter(self._image)
            self._paint_marks(image_painter, viewport)
            image_painter.end()
            self._image_key = key
        painter.drawImage(0, 0, self._image)
        if self.overlay is not None:
            painter.save()
            painter.setRenderHint(QPainter.Antialiasing, True)
            self.overlay(painter, viewport)
            painter.restore()

    def _paint_marks(self, painter: QPainter, viewport: Viewport) -> None:
        l0_x, l0_y, l0_w, l0_h = viewport.visible_l0_rect()
        visible = self._store.query(l0_x, l0_y, l0_x + l0_w, l0_y + l0_h)
        scale = viewport.scale
        bucket = zoom_bucket(scale)
        min_l0 = MIN_SCREEN_SIZE / scale
        painter.save()
        painter.setRenderHint(QPainter.Antialiasing, True)
        # Paths are cached in level-0 pixels; the painter maps them to the screen, pens stay in screen pixels.
        painter.setTransform(_l0_to_screen(viewport))
        shown = []
        for ann in visible:
            if ann.class_name not in self.hidden_classes:
                x0, y0, x1, y1 = self.paths.bounds(ann)
                if x1 - x0 >= min_l0 or y1 - y0 >= min_l0:
                    shown.append(ann)
        self.paths.prepare(shown, bucket)
        selected = []
        self.painted_count = 0
        styles: dict[str, tuple[QColor, QPen]] = {}
        fill = self.fill and self.fill_opacity > 0
        outline = self.outline and self.outline_width > 0
        for ann in shown:
            path = self.paths.get(ann, bucket)
            style = styles.get(ann.class_name)
            if style is None:
                r, g, b = self._store.color_of(ann.class_name)
                style = styles[ann.class_name] = (QColor(r, g, b, round(255 * self.fill_opacity)),
                                                  _pen(QColor(r, g, b), self.outline_width))
            draft = is_draft(ann)
            if fill and not draft:
                painter.fillPath(path, style[0])
            if ann.id in self.selection:
                selected.append((ann, path, self._store.color_of(ann.class_name)))
            elif draft:  # the network's proposal, not a mark yet: dashed in its class colour over a dark halo
                painter.strokePath(path, _pen(DRAFT_HALO, self.outline_width + 2.5))
                painter.strokePath(path, _dashed(style[1]))
            elif outline:
                painter.strokePath(path, style[1])
            self.painted_count += 1
        for ann, path, (r, g, b) in selected:  # on top, unmistakable: lifted, a dark halo, its colour, white dashes
            width = max(self.outline_width, 1.0) * 2
            painter.fillPath(path, SELECTED_LIFT)
            painter.strokePath(path, _pen(SELECTED_HALO, width + 5))
            painter.strokePath(path, _pen(QColor(r, g, b), width))
            dashes = _pen(QColor(255, 255, 255), max(1.5, width / 2))
            dashes.setDashPattern([4, 3])
            painter.strokePath(path, dashes)
        painter.restore()
        if self.show_vertices:
            self._paint_handles(painter, viewport, [ann for ann, _, _ in selected])

    def _paint_handles(self, painter: QPainter, viewport: Viewport, annotations) -> None:
        painter.save()
        painter.setPen(QPen(QColor(30, 30, 30), 1))
        painter.setBrush(QBrush(QColor(255, 255, 255)))
        half = HANDLE_PX / 2
        drawn = 0
        for ann in annotations:
            for polygon in parts_of(ann.geometry):
                for ring in rings_of(polygon):
                    last = None
                    for l0_x, l0_y in ring:
                        sx, sy = viewport.l0_to_screen(l0_x, l0_y)
                        # handles would pile up where vertices are dense on screen: show one per handle width
                        if last is not None and abs(sx - last[0]) + abs(sy - last[1]) < 2 * HANDLE_PX:
                            continue
                        last = (sx, sy)
                        if -half <= sx <= viewport.screen_w + half and -half <= sy <= viewport.screen_h + half:
                            painter.drawRect(QRectF(sx - half, sy - half, HANDLE_PX, HANDLE_PX))
                            drawn += 1
                            if drawn >= MAX_HANDLES:
                                painter.restore()
                                return
        painter.restore()


#: A selected mark is drawn lifted (a white wash), with a dark halo and white dashes over its class colour.
SELECTED_LIFT = QColor(255, 255, 255, 60)
SELECTED_HALO = QColor(0, 0, 0, 200)


def _l0_to_screen(viewport: Viewport) -> QTransform:
    """The same mapping as ``viewport.l0_to_screen``, as a painter transform."""
    s = viewport.scale
    dx, dy = viewport.screen_w / 2 - viewport.l0_cx * s, viewport.screen_h / 2 - viewport.l0_cy * s
    return QTransform(s, 0, 0, s, dx, dy)


#: Drafts (`core.annotations.proposals`) are dashed over this halo, so they read as "not yet a mark".
DRAFT_HALO = QColor(0, 0, 0, 150)
DRAFT_DASHES = [5, 3]


def _dashed(pen: QPen) -> QPen:
    pen = QPen(pen)
    pen.setCapStyle(Qt.FlatCap)
    pen.setDashPattern(DRAFT_DASHES)
    return pen


def _pen(color: QColor, width: float) -> QPen:
    pen = QPen(color, width)
    pen.setCosmetic(True)  # width in screen pixels whatever the zoom
    pen.setJoinStyle(Qt.RoundJoin)
    pen.setCapStyle(Qt.RoundCap)
    return pen
