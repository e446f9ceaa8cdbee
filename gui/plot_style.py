"""How Biopsia's plots look (training curves, ROC): one white, lightly gridded pyqtgraph style.

Only the panels that draw plots import this module, so pyqtgraph loads with the first of them.
"""

from __future__ import annotations

import pyqtgraph as pg

from gui.style import INK

#: Width of every plot's left axis, so plots stacked in one panel line up.
LEFT_AXIS_WIDTH = 58


def make_plot(title: str, y_label: str, x_label: str, legend_offset=(-10, 10)) -> pg.PlotWidget:
    """A white plot with the panel's ink, a light grid, a legend and a fixed-width left axis."""
    pg.setConfigOptions(antialias=True)
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, color=INK, size="11pt")
    plot.setLabel("bottom", x_label, color=INK)
    if y_label:
        plot.setLabel("left", y_label, color=INK)
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setPen(pg.mkPen(INK))
        axis.setTextPen(pg.mkPen(INK))
    plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.addLegend(offset=legend_offset, labelTextColor=INK, brush=pg.mkBrush(255, 255, 255, 220))
    plot.setMenuEnabled(False)
    plot.setMinimumHeight(160)
    return plot


def release_plots(root) -> None:
    """Take down every plot under ``root`` before Qt deletes it.

    ``GraphicsView.close`` clears the plot's scene; without it, view-box updates already queued can reach
    items Qt has deleted, which ends in a crash when a window with plots is destroyed.
    """
    for plot in root.findChildren(pg.GraphicsView):
        plot.close()
