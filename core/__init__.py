"""Biopsia's science floor: slides, annotations, tissue, datasets, models.

Nothing under ``core`` imports Qt; it runs headless (CLI, tests, batches).
"""

__version__ = "0.1.0"
