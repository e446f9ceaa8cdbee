"""Tile datasets: slides and their marks become labelled tiles, in memory, streamed, or as MXNet RecordIO.

The steps live in their own modules; this one gathers their public names for callers that want the
whole dataset API in one import:

- `core.tiles.sources`: which slides, with which marks (`SlideSource`, `sources_from_paths`, `sources_from_project`)
- `core.tiles.planning`: tissue, the labelled grid and the train/test split (`DatasetPlan`, `plan_dataset`)
- `core.tiles.splits`: the classes, the splits and how tiles are split (`CLASSES`, `SPLITS`)
- `core.tiles.reading`: the tiles' pixels, streamed or in memory (`iter_tiles`, `load_tiles`)
- `core.tiles.export`: a dataset folder (`write_dataset`); `core.tiles.folder` reads it back (`read_dataset`)

A dataset folder written by :func:`write_dataset`::

    <out>/train.rec, train.idx, train.lst     tiles of the training split (MXNet RecordIO + index + list)
    <out>/test.rec,  test.idx,  test.lst      tiles of the test split
    <out>/manifest.json                       settings, slides, classes, counts per split and class
    <out>/tiles.csv                           one row per tile: split, record, slide, level-0 x/y, size, µm/px, label

Records hold a JPEG/PNG-encoded RGB tile with an ``IRHeader`` whose label is the class index, so
``mx.recordio.MXIndexedRecordIO`` and ``mx.io.ImageRecordIter`` read them as they are.
"""

from core.tiles.arrays import TileArrays, split_off
from core.tiles.export import ENCODINGS, write_dataset
from core.tiles.folder import (FORMAT, FORMAT_VERSION, MANIFEST, RECORD_MAX_SIDE, read_dataset, read_manifest,
                               read_records)
from core.tiles.planning import DatasetPlan, plan_dataset
from core.tiles.reading import iter_tiles, load_tiles, ordered_positions
from core.tiles.sources import SlideSource, sources_from_paths, sources_from_project
from core.tiles.splits import CLASSES, SPLITS

__all__ = ["CLASSES", "ENCODINGS", "FORMAT", "FORMAT_VERSION", "MANIFEST", "RECORD_MAX_SIDE", "SPLITS",
           "DatasetPlan", "SlideSource", "TileArrays", "iter_tiles", "load_tiles", "ordered_positions",
           "plan_dataset", "read_dataset", "read_manifest", "read_records", "sources_from_paths",
           "sources_from_project", "split_off", "write_dataset"]
