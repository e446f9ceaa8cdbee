"""The viewer's geometry and memory: viewport, display tile cache, buffer pool, memory tuning."""
