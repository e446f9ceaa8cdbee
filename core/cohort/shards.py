"""A dataset's tiles read and encoded on a Dask cluster, one task per slide, merged into the same files.

Each task opens its slide by path, reads and encodes that slide's tiles of each split in the order a
single process writes them (`core.tiles.reading.ordered_positions`), and writes them into a shard file
beside the output folder (lengths, then the encoded tiles). The client then writes the dataset with
`core.tiles.export.write_dataset`, taking each split's tiles from the shards in that order, so the
``.rec``, ``.idx``, ``.lst`` and ``tiles.csv`` files are byte for byte those of a one-process build (the
manifest differs only in when it was made). The shards go once the dataset is in place, or on failure.
"""

from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import Cancelled, DatasetError
from core.tiles.export import encode_positions, write_dataset
from core.tiles.planning import DatasetPlan
from core.tiles.reading import PlanReaders, ordered_positions
from core.tiles.splits import SPLITS

_LENGTH = struct.Struct("<I")
#: Tiles handed to the writer at a time.
CHUNK = 64


def shard_name(slide: int, split: str) -> str:
    return f"slide{slide:05d}-{split}.bin"


def encode_slide(plan: DatasetPlan, slide: int, positions: dict[str, np.ndarray], encoding: str, quality: int,
                 folder: str) -> dict:
    """What a worker does for one slide: its tiles of each split encoded into shard files; a small summary back."""
    readers = PlanReaders(plan)
    tiles = 0
    try:
        for split, where in positions.items():
            blobs = encode_positions(plan, readers, where, encoding, quality)
            path = Path(folder) / shard_name(slide, split)
            part = path.with_name(path.name + ".part")
            with open(part, "wb") as f:
                f.write(_LENGTH.pack(len(blobs)))
                for blob in blobs:
                    f.write(_LENGTH.pack(len(blob)))
                    f.write(blob)
            part.replace(path)  # a shard is whole or absent: a retried task writes it again
            tiles += len(blobs)
    finally:
        readers.close()
    return {"slide": plan.sources[slide].name, "tiles": tiles, "worker": _worker_address()}


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "this process"


def read_shard(path: Path, expected: int) -> list[bytes]:
    """The encoded tiles of one shard; DatasetError when it is not whole."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: a worker's tiles are missing ({err.strerror or err})") from err
    (count,), offset, blobs = _LENGTH.unpack_from(data, 0), _LENGTH.size, []
    for _ in range(count):
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        blobs.append(data[offset:offset + size])
        offset += size
    if count != expected or offset != len(data):
        raise DatasetError(f"{path}: {count} tiles where {expected} were asked, or a damaged file")
    return blobs


def slide_positions(plan: DatasetPlan) -> dict[int, dict[str, np.ndarray]]:
    """For each slide, its positions of each split, in the order the writer takes them."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for split in SPLITS:
        ordered = ordered_positions(plan, plan.select(split))
        for s in np.unique(plan.slide[ordered]):
            out.setdefault(int(s), {})[split] = ordered[plan.slide[ordered] == s]  # keeps the writer's order
    return out


def write_dataset_on_cluster(client, plan: DatasetPlan, out_dir, encoding: str = "jpg", quality: int = 95,
                             progress: Callable[[int, int], None] | None = None,
                             should_stop: Callable[[], bool] | None = None,
                             on_slide: Callable[[dict], None] | None = None) -> dict | None:
    """`write_dataset`, with the tiles read and encoded on ``client``'s cluster, one task per slide.

    The output folder and the slides must be where every worker sees them under the same paths (the shards
    are written beside the output folder). Returns the manifest, or None when ``should_stop`` stopped it.

    Raises
    ------
    DatasetError
        A slide could not be read (named), or the shards could not be written or read back.
    """
    from distributed import as_completed

    out = Path(out_dir).expanduser().absolute()
    folder = out.parent / f".{out.name}.shards-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True)
    except OSError as err:
        raise DatasetError(f"{out.parent}: cannot write the dataset's shards here: {err.strerror or err}") from err
    try:
        jobs = slide_positions(plan)
        futures = client.map(encode_slide, [plan] * len(jobs), list(jobs), [jobs[s] for s in jobs],
                             [encoding] * len(jobs), [quality] * len(jobs), [str(folder)] * len(jobs),
                             pure=False, retries=1)
        done, total = 0, int(plan.label.size)
        for future in as_completed(futures):
            if should_stop is not None and should_stop():
                client.cancel(futures)
                return None
            try:
                summary = future.result()
            except DatasetError:
                client.cancel(futures)
                raise
            except Exception as err:  # a worker lost twice, a task cancelled: say which slide and why
                client.cancel(futures)
                raise DatasetError(f"a slide's tiles could not be read on the cluster ({future.status}: "
                                   f"{type(err).__name__}: {err})") from err
            done += summary["tiles"]
            if on_slide is not None:
                on_slide(summary)
            if progress is not None:
                progress(done, total)

        def encoded(positions: np.ndarray):
            split = SPLITS[int(plan.split[positions[0]])] if positions.size else None
            slides = plan.slide[positions]
            for s in dict.fromkeys(int(v) for v in slides):  # the slides in the writer's order
                part = positions[slides == s]
                blobs = read_shard(folder / shard_name(s, split), part.size)
                for i in range(0, part.size, CHUNK):
                    yield part[i:i + CHUNK], blobs[i:i + CHUNK]

        try:
            return write_dataset(plan, out, encoding, quality, should_stop=should_stop, encoded=encoded)
        except Cancelled:
            return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
