"""The labelled tile grid: labels against known tumour, physical tile size, marks, errors, pixels."""

from __future__ import annotations

import cv2
import tifffile
import numpy as np
import pytest
import shapely
from shapely.geometry import Point, box

from core.annotations.formats import read_annotations
from core.annotations.model import Annotation
from core.errors import BiopsiaError
from core.slide import ArrayReader, open_slide
from core.slide.tifffile_reader import TiffFileReader
from core.tiles.grid import (BACKGROUND, DROPPED, EXCLUDED, NON_TUMOUR_LABEL, PEN, REASONS, TUMOUR_LABEL, UNLABELLED, TilePlan,
                         TileSpec, plan_tiles, read_tile, tile_size_l0)
from core.tiles.tissue import detect_tissue
from tests.core.tiles.test_tissue import GREEN, he_image


@pytest.fixture(scope="module")
def synth(synthetic_slide):
    marks = read_annotations(synthetic_slide.geojson_path).annotations
    with open_slide(synthetic_slide.slide_path) as reader:
        tissue = detect_tissue(reader)
        plan = plan_tiles(reader, TileSpec(), tissue, marks)
    return synthetic_slide, marks, tissue, plan


def centres(plan: TilePlan, indices) -> list[Point]:
    half = plan.tile_l0 / 2
    return [Point(plan.l0_x[i] + half, plan.l0_y[i] + half) for i in indices]


def test_tumour_tiles_lie_in_the_known_tumour(synth):
    result, _, _, plan = synth
    truth = shapely.union_all(result.tumour_polygons)
    tumour = np.flatnonzero(plan.label == TUMOUR_LABEL)
    normal = np.flatnonzero(plan.label == NON_TUMOUR_LABEL)
    assert len(tumour) >= 5 and len(normal) >= 5
    for i, centre in zip(tumour, centres(plan, tumour)):
        assert truth.buffer(plan.tile_l0 * 0.25).contains(centre)
        tile = box(plan.l0_x[i], plan.l0_y[i], plan.l0_x[i] + plan.tile_l0, plan.l0_y[i] + plan.tile_l0)
        assert truth.intersection(tile).area / tile.area > 0.45
    for i, centre in zip(normal, centres(plan, normal)):
        assert not truth.contains(centre)
        tile = box(plan.l0_x[i], plan.l0_y[i], plan.l0_x[i] + plan.tile_l0, plan.l0_y[i] + plan.tile_l0)
        assert truth.intersection(tile).area / tile.area < 0.08
    assert (plan.tissue_fraction[plan.label != DROPPED] >= 0.5).all()


def test_counts_add_up_to_the_grid(synth):
    result, _, _, plan = synth
    rows, cols = plan.grid_shape
    assert plan.tile_l0 == 256  # 128 px at 1 µm/px on a 0.5 µm/px slide
    assert (rows, cols) == (result.height // 256, result.width // 256)
    assert len(plan) == rows * cols == sum(plan.counts.values())
    assert set(plan.counts) == set(REASONS)
    assert plan.counts["tumour"] == (plan.label == TUMOUR_LABEL).sum()
    assert plan.counts["non_tumour"] == (plan.label == NON_TUMOUR_LABEL).sum()
    assert plan.counts["background"] > 0
    assert len(plan.kept) == plan.counts["tumour"] + plan.counts["non_tumour"]
    assert plan.l0_x.max() + plan.tile_l0 <= result.width and plan.l0_y.max() + plan.tile_l0 <= result.height


def test_stride_overlaps_tiles(synth):
    result, marks, tissue, _ = synth
    with open_slide(result.slide_path) as reader:
        plan = plan_tiles(reader, TileSpec(), tissue, marks, stride=128)
    assert plan.grid_shape == ((result.height - 256) // 128 + 1, (result.width - 256) // 128 + 1)
    assert sum(plan.counts.values()) == len(plan)


def test_same_physical_tiles_at_20x_and_40x():
    rgb40 = he_image(2400, 1800, seed=2)
    rgb20 = cv2.resize(rgb40, (1200, 900), interpolation=cv2.INTER_AREA)
    mark40 = Annotation(box(600, 600, 1400, 1200), "Tumour")
    mark20 = Annotation(box(300, 300, 700, 600), "Tumour")
    plans = []
    for rgb, mpp, mark in ((rgb40, 0.25, mark40), (rgb20, 0.5, mark20)):
        reader = ArrayReader(rgb, mpp=(mpp, mpp))
        plan = plan_tiles(reader, TileSpec(64, 2.0), detect_tissue(reader), [mark])
        assert plan.tile_l0 * mpp == pytest.approx(128.0)
        assert read_tile(reader, plan, int(plan.kept[0])).shape == (64, 64, 3)
        plans.append((plan, mpp))
    (a, mpp_a), (b, mpp_b) = plans
    assert a.grid_shape == b.grid_shape
    assert np.array_equal(a.l0_x * mpp_a, b.l0_x * mpp_b)
    assert np.array_equal(a.label, b.label)
    assert (a.label == TUMOUR_LABEL).sum() > 0


def test_exclude_marks_drop_tiles(synth):
    result, marks, tissue, plan = synth
    tumour = np.flatnonzero(plan.label == TUMOUR_LABEL)
    x, y = plan.l0_x[tumour[0]], plan.l0_y[tumour[0]]
    exclude = Annotation(box(x + 10, y + 10, x + 200, y + 200), "Exclude")
    with open_slide(result.slide_path) as reader:
        excluded = plan_tiles(reader, TileSpec(), tissue, [*marks, exclude])
    assert excluded.reason[tumour[0]] == EXCLUDED and excluded.label[tumour[0]] == DROPPED
    assert excluded.counts["excluded"] == 1
    assert excluded.counts["tumour"] == plan.counts["tumour"] - 1


def test_partly_annotated_slides_take_non_tumour_only_from_benign_marks(synth):
    result, marks, tissue, plan = synth
    normal = np.flatnonzero(plan.label == NON_TUMOUR_LABEL)
    chosen = normal[: max(2, len(normal) // 3)]
    x0, y0 = plan.l0_x[chosen].min(), plan.l0_y[chosen].min()
    x1, y1 = plan.l0_x[chosen].max() + plan.tile_l0, plan.l0_y[chosen].max() + plan.tile_l0
    benign = box(x0, y0, x1, y1)
    with open_slide(result.slide_path) as reader:
        partial = plan_tiles(reader, TileSpec(), tissue, [*marks, Annotation(benign, "Benign")],
                             fully_annotated=False)
        unmarked = plan_tiles(reader, TileSpec(), tissue, marks, fully_annotated=False)
    kept_normal = np.flatnonzero(partial.label == NON_TUMOUR_LABEL)
    assert len(kept_normal) >= len(chosen)
    assert all(benign.contains(c) for c in centres(partial, kept_normal))
    assert partial.counts["unlabelled"] > 0
    assert np.array_equal(partial.label == TUMOUR_LABEL, plan.label == TUMOUR_LABEL)
    assert unmarked.counts["non_tumour"] == 0
    assert unmarked.counts["unlabelled"] == plan.counts["non_tumour"]
    assert (unmarked.reason[plan.label == NON_TUMOUR_LABEL] == UNLABELLED).all()


def test_pen_tiles_are_dropped():
    rgb = he_image(1600, 1200)
    cv2.line(rgb, (200, 600), (1400, 600), GREEN, 60)
    reader = ArrayReader(rgb, mpp=(1.0, 1.0))
    plan = plan_tiles(reader, TileSpec(64, 2.0), detect_tissue(reader))
    on_line = (plan.l0_y <= 600) & (plan.l0_y + plan.tile_l0 > 600) & (plan.l0_x >= 300) & (plan.l0_x < 1200)
    assert on_line.sum() > 3
    assert (plan.reason[on_line] == PEN).all()
    near_line = (plan.l0_y <= 630) & (plan.l0_y + plan.tile_l0 > 570) & (plan.l0_x + plan.tile_l0 > 170) \
        & (plan.l0_x < 1430)
    assert (near_line[plan.reason == PEN]).all()
    assert plan.counts["non_tumour"] > 0


def test_a_slide_without_mpp_is_refused():
    reader = ArrayReader(he_image(800, 600), path="case-17.png")
    with pytest.raises(BiopsiaError, match="case-17.png.*micrometres per pixel"):
        tile_size_l0(reader, TileSpec())
    with pytest.raises(BiopsiaError, match="case-17.png"):
        plan_tiles(reader, TileSpec(), detect_tissue(reader))


def test_read_tile_gives_the_tile_pixels():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (500, 480, 3), np.uint8)  # small enough to be one level
    reader = ArrayReader(rgb, mpp=(0.5, 0.5))
    plan = plan_tiles(reader, TileSpec(64, 1.0), detect_tissue(reader), stride=100)
    assert (plan.level, plan.read_px, plan.tile_l0) == (0, 128, 128)
    for i in (0, len(plan) - 1):
        x, y = int(plan.l0_x[i]), int(plan.l0_y[i])
        expected = cv2.resize(reader.read_region(x, y, 0, 128, 128), (64, 64), interpolation=cv2.INTER_AREA)
        tile = read_tile(reader, plan, i)
        assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8
        assert np.array_equal(tile, expected)


def test_read_tile_uses_a_coarser_level(synth):
    result, _, _, _ = synth
    with open_slide(result.slide_path) as reader:
        tissue = detect_tissue(reader)
        plan = plan_tiles(reader, TileSpec(128, 4.0), tissue)  # 1024 level-0 px: read from level 1 (4x)
        assert (plan.tile_l0, plan.level, plan.read_px) == (1024, 1, 256)
        i = int(np.argmax(plan.tissue_fraction))
        x, y = int(plan.l0_x[i]), int(plan.l0_y[i])
        tile = read_tile(reader, plan, i)
        direct = cv2.resize(reader.read_region(x, y, 0, 1024, 1024), (128, 128), interpolation=cv2.INTER_AREA)
    assert tile.shape == (128, 128, 3)
    assert np.abs(tile.astype(int) - direct.astype(int)).mean() < 4


# -- edge tiles: the grid covers the whole slide -------------------------------------------------
EDGE_W, EDGE_H = 1000, 700  # not multiples of the 256 px tile (128 px at 1 µm/px on a 0.5 µm/px slide)


def tissue_everywhere(width: int, height: int, seed: int = 5) -> np.ndarray:
    """Stained tissue over the image but for a square of glass at (256..512, 0..256): edge tiles have tissue."""
    from tests.core.tiles.test_tissue import PINK, PURPLE
    rng = np.random.default_rng(seed)
    rgb = np.full((height, width, 3), PINK, np.uint8)
    for _ in range(width * height // 2000):
        cv2.circle(rgb, (int(rng.integers(0, width)), int(rng.integers(0, height))), 4, PURPLE, -1)
    rgb[0:256, 256:512] = 245
    return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)


#: Tumour only in the right strip beyond the last whole column (x >= 768) and the bottom strip (y >= 512).
EDGE_MARKS = [Annotation(box(768, 0, EDGE_W, EDGE_H), "Tumour"), Annotation(box(0, 512, 250, EDGE_H), "Tumour")]


def covered(xs, ys, side: int, width: int, height: int) -> np.ndarray:
    """Which pixels of a ``width`` x ``height`` slide the squares at (xs, ys) cover."""
    hit = np.zeros((height, width), bool)
    for x, y in zip(np.asarray(xs).tolist(), np.asarray(ys).tolist()):
        hit[int(y):int(y) + side, int(x):int(x) + side] = True
    return hit


def test_edge_tiles_are_shifted_inside_and_cover_the_slide():
    reader = ArrayReader(tissue_everywhere(EDGE_W, EDGE_H), mpp=(0.5, 0.5))
    plan = plan_tiles(reader, TileSpec(), detect_tissue(reader), EDGE_MARKS)
    assert plan.tile_l0 == 256 and plan.grid_shape == (3, 4)  # was (2, 3): the strips were dropped
    assert (plan.stride, plan.slide_size) == (256, (EDGE_W, EDGE_H))
    rows, cols = plan.grid_shape
    assert plan.l0_x[:cols].tolist() == [0, 256, 512, EDGE_W - 256]
    assert plan.l0_y[::cols].tolist() == [0, 256, EDGE_H - 256]
    assert plan.l0_x.max() + 256 == EDGE_W and plan.l0_y.max() + 256 == EDGE_H
    assert covered(plan.l0_x, plan.l0_y, 256, EDGE_W, EDGE_H).all()
    label = plan.label.reshape(rows, cols)
    # the right column (tile 744..1000) is 91 % tumour, its neighbour (512..768) none: only the strip has it
    assert (label[:, 3] == TUMOUR_LABEL).all() and (label[1:, 2] == NON_TUMOUR_LABEL).all()
    assert label[2, 0] == TUMOUR_LABEL and label[1, 0] == NON_TUMOUR_LABEL  # bottom row: 444..700
    assert plan.reason[1] == BACKGROUND and (np.delete(plan.tissue_fraction, 1) > 0.9).all()
    # an edge tile's pixels are the slide's last 256 columns, with no padding
    i = 3
    assert np.array_equal(read_tile(reader, plan, i),
                          cv2.resize(reader.read_region(EDGE_W - 256, 0, 0, 256, 256), (128, 128),
                                     interpolation=cv2.INTER_AREA))


def test_edge_tiles_with_overlap_and_on_a_slide_that_fits_the_tile():
    reader = ArrayReader(tissue_everywhere(EDGE_W, EDGE_H), mpp=(0.5, 0.5))
    tissue = detect_tissue(reader)
    plan = plan_tiles(reader, TileSpec(), tissue, stride=100)
    rows, cols = plan.grid_shape
    assert (rows, cols) == (-(-(EDGE_H - 256) // 100) + 1, -(-(EDGE_W - 256) // 100) + 1) == (6, 9)
    assert plan.l0_x[:cols].tolist() == [0, 100, 200, 300, 400, 500, 600, 700, EDGE_W - 256]
    assert covered(plan.l0_x, plan.l0_y, 256, EDGE_W, EDGE_H).all()
    exact = ArrayReader(tissue_everywhere(1024, 768), mpp=(0.5, 0.5))
    assert plan_tiles(exact, TileSpec(), detect_tissue(exact)).grid_shape == (3, 4)  # multiples: unchanged
    small = ArrayReader(tissue_everywhere(200, 700), mpp=(0.5, 0.5))
    assert plan_tiles(small, TileSpec(), detect_tissue(small)).grid_shape == (3, 0)  # narrower than a tile


def test_a_dataset_has_the_edge_tiles_with_their_labels(tmp_path):
    from core.evaluation.compare import truth_for_grid
    from core.inference.predict import ProbabilityGrid
    from core.tiles.dataset import SlideSource, load_tiles, plan_dataset
    from core.tiles.preview import compute_plan

    rgb = tissue_everywhere(EDGE_W, EDGE_H)
    path = tmp_path / "edge.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    source = SlideSource(path, "edge", EDGE_MARKS, mpp=(0.5, 0.5), declared=True)
    dataset = plan_dataset([source], TileSpec(), split="random", ratio=1.0)
    plan = dataset.plans[0]
    rows, cols = plan.grid_shape
    edge = (plan.l0_x == EDGE_W - 256) | (plan.l0_y == EDGE_H - 256)
    assert edge.sum() == rows + cols - 1 == 6
    assert np.isin(np.flatnonzero(edge & (plan.label != DROPPED)), dataset.index).all()
    tiles = load_tiles(dataset)
    corner = int(np.flatnonzero(dataset.index == rows * cols - 1)[0])  # the bottom-right tile
    assert tiles.labels[corner] == TUMOUR_LABEL
    expected = cv2.resize(rgb[EDGE_H - 256:, EDGE_W - 256:], (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(tiles.images[corner].astype(int) - expected).max() <= 1
    # the Tiles preview and the comparison's truth on a regular grid label the edge tiles the same way
    with open_slide(path) as reader:
        preview = compute_plan(reader, (0.5, 0.5), TileSpec(), EDGE_MARKS, None, True).plan
    np.testing.assert_array_equal(preview.label, plan.label)
    grid = ProbabilityGrid(probs=np.zeros((rows, cols)), origin=(0, 0), stride=256, tile_l0=256, tile_px=128,
                           mpp=1.0, slide_size=(EDGE_W, EDGE_H))
    truth = truth_for_grid(grid, EDGE_MARKS).ravel()
    kept = plan.label != DROPPED
    np.testing.assert_array_equal(truth[kept], plan.label[kept])
    assert (truth.reshape(rows, cols)[:, 3] == TUMOUR_LABEL).all()


def _reader_cases(tmp_path):
    from core.slide.image_reader import ImageReader
    from core.slide.openslide_reader import OpenSlideReader
    from core.slide.tifffile_reader import TiffFileReader
    from tests.core.slide.test_slide_readers import pattern, pyramid, write_generic_tiff

    image = pattern(EDGE_H, EDGE_W)
    tiff = write_generic_tiff(tmp_path / "edge.tif", pyramid(image, 2))
    png = tmp_path / "edge.png"
    cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return image, {"array": lambda: ArrayReader(image, mpp=(0.5, 0.5)), "image": lambda: ImageReader(png),
                   "openslide": lambda: OpenSlideReader(tiff), "tifffile": lambda: TiffFileReader(tiff)}


@pytest.mark.parametrize("backend", ["array", "image", "openslide", "tifffile"])
def test_reading_past_the_edge_pads_with_white_on_every_reader(tmp_path, backend):
    from core.tiles.grid import read_padded

    image, cases = _reader_cases(tmp_path)
    with cases[backend]() as reader:
        assert reader.dimensions == (EDGE_W, EDGE_H)
        block = read_padded(reader, EDGE_W - 56, EDGE_H - 20, 0, 128)
        assert block.shape == (128, 128, 3)
        assert np.array_equal(block[:20, :56], image[EDGE_H - 20:, EDGE_W - 56:])
        assert (block[20:] == 255).all() and (block[:, 56:] == 255).all()
        inside = read_padded(reader, 100, 50, 0, 128)
        assert np.array_equal(inside, image[50:178, 100:228])
        assert (read_padded(reader, EDGE_W + 10, 0, 0, 64) == 255).all()  # wholly outside: glass
        if reader.level_count > 1:  # a coarser level: its own, rounded size bounds the read
            lv_w, lv_h = reader.level_dimensions[1]
            ds = reader.level_downsamples[1]
            coarse = read_padded(reader, int((lv_w - 30) * ds), 0, 1, 64)
            assert (coarse[:, 30:] == 255).all() and not (coarse[:, :30] == 255).all()


class NominalDownsamples(ArrayReader):
    """A reader that states whole downsamples (2, 4, ...) while its levels' sizes are rounded down, as scanners do."""

    @property
    def level_downsamples(self):
        return tuple(float(2 ** k) for k in range(self.level_count))


def test_an_edge_tile_read_from_a_rounded_level_has_no_white_line():
    from tests.core.slide.test_slide_readers import pattern

    image = pattern(701, 1001)  # no pixel of the pattern is white
    reader = NominalDownsamples(image, mpp=(0.5, 0.5))
    assert reader.level_dimensions[1] == (500, 350) and reader.level_downsamples[1] == 2.0
    plan = plan_tiles(reader, TileSpec(30, 1.05), detect_tissue(reader))  # 63 px tiles read as 32 px of level 1
    assert (plan.tile_l0, plan.level, plan.read_px) == (63, 1, 32)
    last = len(plan) - 1
    assert (plan.l0_x[last], plan.l0_y[last]) == (1001 - 63, 701 - 63)
    # level 1 ends at pixel 500, but (1001 - 63) / 2 + 32 = 501: the read moves back one level pixel
    tile = read_tile(reader, plan, last)
    assert not (tile == 255).all(-1).any()


def test_prediction_order_decodes_each_stored_block_once(tmp_path, monkeypatch):
    """Band by band of the stored blocks' height, each JPEG block is decoded once even when the reader's cache
    holds less than a row of them; row-major order decodes each twice here (two rows of tiles per block)."""
    from core.slide import tifffile_reader
    from core.tiles.grid import read_order, read_tiles

    rng = np.random.default_rng(7)
    image = cv2.resize(rng.integers(0, 256, (64, 128, 3), np.uint8), (4096, 2048), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "blocks.tiff"
    tifffile.imwrite(path, image, tile=(512, 512), photometric="rgb", compression="jpeg",
                     resolution=(20000, 20000), resolutionunit="CENTIMETER")
    monkeypatch.setattr(tifffile_reader, "_CACHE_BYTES", 4 * 512 * 512 * 3)  # half a row of blocks

    def decodes_and_tiles(order_of) -> tuple[int, np.ndarray]:
        with TiffFileReader(path) as reader:
            assert reader.mpp == pytest.approx((0.5, 0.5)) and reader.stored_tile_size(0) == (512, 512)
            plan = plan_tiles(reader, TileSpec(128, 1.0), detect_tissue(reader), tissue_min=0.0)
            assert (plan.level, plan.read_px, len(plan)) == (0, 256, 16 * 8)
            order = order_of(reader, plan)
            assert sorted(order.tolist()) == list(range(len(plan)))  # every tile, once
            reads = []
            raw = reader._raw
            monkeypatch.setattr(reader, "_raw", lambda *a: reads.append(a) or raw(*a))
            tiles = np.concatenate([read_tiles(reader, plan, order[i:i + 16]) for i in range(0, order.size, 16)])
            return len(reads), tiles[np.argsort(order)]

    banded, banded_tiles = decodes_and_tiles(lambda reader, plan: read_order(reader, plan, np.arange(len(plan))))
    row_major, row_tiles = decodes_and_tiles(lambda reader, plan: np.arange(len(plan)))
    assert banded == 8 * 4 and row_major == 2 * 8 * 4, (banded, row_major)
    assert np.array_equal(banded_tiles, row_tiles)  # the same pixels, whatever the order
    # a reader that does not say how it stores its levels keeps row-major order
    reader = ArrayReader(image, mpp=(0.5, 0.5))
    plan = plan_tiles(reader, TileSpec(128, 1.0), detect_tissue(reader), tissue_min=0.0)
    assert read_order(reader, plan, np.arange(len(plan))).tolist() == list(range(len(plan)))
