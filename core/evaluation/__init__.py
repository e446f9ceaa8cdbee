"""Step 4, heatmap against marks: the tile-level comparison and the HTML report."""
