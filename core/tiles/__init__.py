"""Step 1, slide -> labelled tiles: tissue, the tile grid and its labelling rules, datasets, RecordIO."""
