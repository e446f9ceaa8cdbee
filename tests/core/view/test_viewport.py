"""Viewport arithmetic and the tile plan: the geometry every view relies on."""

import math

import numpy as np

import pytest

from core.view.display_cache import TileCache, TileGrid, TileKey
from core.view.viewport import (MAX_SCALE, Viewport, format_length_um, magnification_at, nice_length_at_least,
                           nice_length_um, scale_for_magnification)


def test_fit_shows_whole_slide_centred():
    vp = Viewport.fit(40000, 30000, 1600, 1000)
    x, y, w, h = vp.visible_l0_rect()
    assert x <= 0 and y <= 0 and x + w >= 40000 and y + h >= 30000
    assert vp.l0_to_screen(20000, 15000) == pytest.approx((800, 500))


def test_zoom_about_cursor_keeps_point_under_cursor():
    vp = Viewport.fit(40000, 30000, 1600, 1000)
    before = vp.screen_to_l0(300, 200)
    zoomed = vp.zoomed_about(300, 200, 3.0)
    assert zoomed.scale == pytest.approx(vp.scale * 3)
    assert zoomed.screen_to_l0(300, 200) == pytest.approx(before)


def test_zoom_is_clamped():
    vp = Viewport.fit(1000, 1000, 500, 500)
    assert vp.zoomed_about(250, 250, 1e6).scale == MAX_SCALE
    assert vp.zoomed_about(250, 250, 1e-6).scale == pytest.approx(vp.min_scale)


def test_pan_moves_content_with_the_drag_and_stays_on_slide():
    vp = Viewport.fit(10000, 10000, 1000, 1000).centred_on(5000, 5000, 1.0)
    moved = vp.panned(100, -50)  # drag right and up: content follows the mouse
    assert moved.l0_cx == pytest.approx(4900) and moved.l0_cy == pytest.approx(5050)
    far = vp.panned(1e9, 1e9)
    assert (far.l0_cx, far.l0_cy) == (0.0, 0.0)


def test_magnification_from_objective_or_mpp():
    assert magnification_at(0.5, 20, 0.5) == pytest.approx(10)
    assert magnification_at(0.5, None, 0.25) == pytest.approx(20)
    assert magnification_at(1.0, None, None) is None
    assert scale_for_magnification(5, 20, None) == pytest.approx(0.25)
    assert scale_for_magnification(40, None, 0.25) == pytest.approx(1.0)
    assert scale_for_magnification(5, None, None) is None


@pytest.mark.parametrize("value,expected", [(160, 100), (499, 200), (999, 500), (1000, 1000), (0.7, 0.5)])
def test_nice_lengths(value, expected):
    assert nice_length_um(value) == pytest.approx(expected)


def test_nice_length_at_least_and_format():
    assert nice_length_at_least(130) == pytest.approx(200)
    assert nice_length_at_least(1) == pytest.approx(1)
    assert format_length_um(250) == "250 µm" and format_length_um(2500) == "2.5 mm"


def test_grid_chooses_level_drawn_at_scale_at_most_one():
    grid = TileGrid(((40000, 30000), (10000, 7500), (2500, 1875), (625, 468)), (1, 4, 16, 64.1))
    assert grid.level_for_downsample(1) == 0
    assert grid.level_for_downsample(3.9) == 0
    assert grid.level_for_downsample(4) == 1
    assert grid.level_for_downsample(1000) == 3


def test_plan_covers_viewport_without_gaps():
    grid = TileGrid(((40000, 30000), (10000, 7500)), (1, 4))
    vp = Viewport.fit(40000, 30000, 1600, 1000).centred_on(12345, 6789, 0.5)
    level, visible, prefetch = grid.plan("s", vp)
    assert level == 0
    covered = set()
    for key in visible:
        x, y, w, h = grid.tile_l0_rect(key)
        covered.add((key.col, key.row))
        assert w > 0 and h > 0
    x, y, w, h = vp.visible_l0_rect()
    cols = range(math.floor(x / 512), math.floor((x + w) / 512) + 1)
    rows = range(math.floor(y / 512), math.floor((y + h) / 512) + 1)
    assert covered == {(c, r) for c in cols for r in rows}
    # nearest the centre first, prefetch disjoint from visible, includes a coarser level
    centre = grid.tile_l0_rect(visible[0])
    assert centre[0] <= 12345 < centre[0] + 512 + 1 and centre[1] <= 6789 < centre[1] + 512 + 1
    assert not set(prefetch) & set(visible)
    assert any(k.level == 1 for k in prefetch)


def test_edge_tiles_are_clipped():
    grid = TileGrid(((1000, 700),), (1,))
    assert grid.tile_size_of(TileKey("s", 0, 1, 1)) == (488, 188)


def test_cache_is_bounded_in_bytes_and_lru():
    class Blob:
        def __init__(self, n):
            self.nbytes = n

    cache = TileCache(max_bytes=1000)
    for i in range(5):
        cache.put(i, Blob(300))
    assert cache.nbytes <= 1000 and len(cache) == 3
    assert cache.get(0) is None and cache.get(2) is not None
    cache.put(5, Blob(300))  # evicts 3, the least recently used (2 was just used)
    assert 3 not in cache and 2 in cache
    cache.put("huge", Blob(5000))
    assert "huge" not in cache
    assert cache.discard_where(lambda k: k == 2) == 1
    cache.resize(300)
    assert cache.nbytes <= 300


def test_evicted_values_are_handed_back():
    class Blob:
        nbytes = 400

    gone = []
    cache = TileCache(max_bytes=1000, on_evict=gone.append)
    blobs = [Blob() for _ in range(4)]
    for i, blob in enumerate(blobs):
        cache.put(i, blob)
    assert gone == [blobs[0], blobs[1]]
    cache.put(3, blobs[0])  # replacing a key hands back the old value
    assert gone[-1] is blobs[3]
    cache.clear()
    assert set(map(id, gone)) == set(map(id, blobs)) and len(cache) == 0


def test_slab_pool_recycles_buffers():
    from core.view.buffer_pool import SlabPool

    pool = SlabPool((8, 8, 4), slots_per_slab=4)
    slots = [pool.acquire() for _ in range(5)]
    assert pool.allocated_bytes == 2 * 4 * 256
    for i, slot in enumerate(slots):
        slot.array[:] = i
    assert all(int(s.array[0, 0, 0]) == i for i, s in enumerate(slots))  # distinct memory
    first = slots[0].array
    slots[0].release()
    slots[0].release()  # twice is harmless
    again = pool.acquire()
    assert np.shares_memory(again.array, first) and pool.allocated_bytes == 2 * 4 * 256
