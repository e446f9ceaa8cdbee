"""Step 3, network -> heatmap: whole-slide prediction and heatmap pictures and files."""
