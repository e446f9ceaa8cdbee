"""Seeded fuzzer of the reviewed-regions file (``<slide-id>.reviewed.json``): damaged copies of a real file
(cut, bytes flipped, inserted or dropped, JSON values swapped for others) never make reading fail. Every
region read is a valid polygon, every problem names the file, and reading changes nothing on disk."""

from __future__ import annotations

import json
import random

from shapely.geometry import box

from core.project.reviewed import ReviewedRegions, load_reviewed
from fuzzing import seeds

ODD_VALUES = [None, 0, -1, 1e308, float("nan"), "", "POLYGON EMPTY", "POINT (1 2)", "POLYGON ((0 0, 1 1, 0 0))",
              "POLYGON ((0 0, 10 0, 0 10, 10 10, 0 0))", [], {}, "x" * 5000, True]


def damaged(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(data[:rng.randrange(len(data))])
    if kind == 1:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:
        at = rng.randrange(len(data))
        return bytes(data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20))) + data[at:])
    if kind == 3:
        at = rng.randrange(len(data))
        return bytes(data[:at] + data[at + rng.randrange(1, 30):])
    doc = json.loads(body)
    entry = rng.choice(doc["regions"])
    entry[rng.choice(["wkt", "reviewed_at", "other"])] = rng.choice(ODD_VALUES)
    if rng.random() < 0.3:
        doc[rng.choice(["regions", "format", "version"])] = rng.choice(ODD_VALUES)
    return json.dumps(doc).encode()


def test_damaged_reviewed_files_read_what_they_can_and_say_the_rest(tmp_path):
    path = tmp_path / "slide.reviewed.json"
    regions = ReviewedRegions(path)
    for i in range(4):
        regions.add(box(i * 100, 0, i * 100 + 80, 60))
    regions.add(box(0, 200, 300, 500).difference(box(100, 300, 200, 400)))  # a hole
    good = path.read_bytes()
    for seed in seeds(300):
        rng = random.Random(seed)
        body = damaged(good, rng)
        path.write_bytes(body)
        loaded = load_reviewed(path)
        assert path.read_bytes() == body, seed  # reading writes nothing
        for region in loaded.regions:
            assert region.geometry.is_valid and not region.geometry.is_empty, seed
            assert region.geometry.geom_type in ("Polygon", "MultiPolygon"), seed
        assert all(str(path) in problem for problem in loaded.problems), (seed, loaded.problems)
        if body == good:
            assert len(loaded.regions) == 5 and not loaded.problems
