"""core.inference.predict and core.evaluation.compare: whole-slide prediction with a real model, saved grids, the comparison
with the doctors' marks, and the failures a user can run into."""

import json
import shutil

import numpy as np
import pytest

from core.annotations.formats import read_annotations
from core.evaluation.compare import (FALSE_NEGATIVE, FALSE_POSITIVE, NOT_COMPARED, compare, summarise, summary_csv,
                          truth_for_grid)
from core.errors import BiopsiaError, ModelError
from core.inference.predict import ProbabilityGrid, model_identity, predict_slide


@pytest.fixture(scope="module")
def unseen(slide_pair, small_model):
    """The model's grid over the slide it never saw, with every partial result."""
    parts, progress = [], []
    grid = predict_slide(slide_pair[0].slide_path, small_model, device="cpu", batch_size=32,
                         partial=parts.append, progress=lambda d, t: progress.append((d, t)))
    return grid, parts, progress


def test_the_grid_covers_the_tissue_and_finds_the_tumour(unseen, slide_pair):
    grid, parts, progress = unseen
    assert grid.complete and grid.tile_px == 64 and grid.mpp == 2.0 and grid.tile_l0 == 256
    assert grid.shape == (6144 // 256, 8192 // 256)
    assert np.array_equal(grid.done, grid.predicted) and 100 < grid.done.sum() < grid.probs.size
    truth = truth_for_grid(grid, read_annotations(slide_pair[0].geojson_path).annotations)
    result = compare(grid, truth, 0.5, name="pair29")
    assert result.metrics.auc >= 0.95, result.metrics.as_dict()
    assert result.metrics.counts.total > 150
    inside = grid.probs[(truth == 1) & grid.done].mean()
    outside = grid.probs[(truth == 0) & grid.done].mean()
    assert inside - outside > 0.4


def test_partial_results_arrive_in_batches_and_cover_every_tile(unseen):
    grid, parts, progress = unseen
    assert len(parts) == -(-int(grid.predicted.sum()) // 32) > 3
    seen = np.zeros(grid.shape, int)
    for part in parts:
        seen[part.rows, part.cols] += 1
        assert np.allclose(grid.probs[part.rows, part.cols], part.probs)
    assert np.array_equal(seen == 1, grid.predicted) and seen.max() == 1
    assert [p.done for p in parts] == sorted(p.done for p in parts) and parts[-1].done == parts[-1].total
    assert progress[-1] == (parts[-1].total, parts[-1].total) and parts[-1].tiles_per_s > 0


def test_identity_and_saved_grids(unseen, small_model, tmp_path):
    grid, _, _ = unseen
    identity = model_identity(small_model)
    assert grid.model == identity and len(identity["sha256"]) == 64 and identity["tile_px"] == 64
    path = grid.save(tmp_path / "p" / "grid.npz")
    again = ProbabilityGrid.load(path)
    assert np.array_equal(np.isnan(again.probs), np.isnan(grid.probs))
    assert np.allclose(again.probs[grid.done], grid.probs[grid.done])
    assert (again.origin, again.stride, again.tile_l0, again.model, again.complete) == \
        (grid.origin, grid.stride, grid.tile_l0, grid.model, True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BiopsiaError, match="prediction file is damaged"):
        ProbabilityGrid.load(path)


def test_cancelling_keeps_what_was_done(slide_pair, small_model):
    parts = []
    grid = predict_slide(slide_pair[0].slide_path, small_model, device="cpu", batch_size=16, partial=parts.append,
                         should_stop=lambda: len(parts) >= 2)
    assert not grid.complete and len(parts) == 2
    assert grid.done.sum() == 32 and grid.predicted.sum() > 32


def test_overlapping_tiles(slide_pair, small_model):
    grid = predict_slide(slide_pair[0].slide_path, small_model, device="cpu", stride=128, batch_size=64)
    assert grid.stride == 128 and grid.tile_l0 == 256
    assert grid.shape == ((6144 - 256) // 128 + 1, (8192 - 256) // 128 + 1)
    x, y, w, h = grid.cell_rect(3, 5)
    assert (x, y, w, h) == (5 * 128 + 64, 3 * 128 + 64, 128, 128)  # the middle of tile (3, 5)
    assert grid.cell_at(x + 1, y + 1) == (3, 5) and grid.cell_at(-500, 0) is None


def test_a_model_that_does_not_fit_the_slide_is_refused(slide_pair, small_model, tmp_path):
    with pytest.raises(ModelError, match=r"the slide has 4 µm/px but the model .* trained on 2 µm/px tiles"):
        predict_slide(slide_pair[0].slide_path, small_model, device="cpu", slide_mpp=(4.0, 4.0))
    copy = tmp_path / "nompp"
    shutil.copytree(small_model, copy)
    doc = json.loads((copy / "model.json").read_text())
    doc["mpp"] = None
    (copy / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="does not record the µm/px"):
        predict_slide(slide_pair[0].slide_path, copy, device="cpu")
    with pytest.raises(ModelError, match="not a model"):
        predict_slide(slide_pair[0].slide_path, tmp_path, device="cpu")


# -- comparison on planted grids -----------------------------------------------------------------
def _grid(probs):
    probs = np.asarray(probs, np.float32)
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=100, tile_l0=100, tile_px=64, mpp=2.0,
                           slide_size=(100 * probs.shape[1], 100 * probs.shape[0]))


def test_disagreement_regions_are_found_and_sorted():
    probs = np.full((6, 8), 0.1)
    probs[0, :] = np.nan
    probs[1:3, 0:3] = 0.9  # a 2x3 false positive
    probs[5, 7] = 0.8  # a single false positive
    truth = np.zeros((6, 8), np.int8)
    truth[4:6, 4:6] = 1  # tumour the network missed (4 tiles)
    truth[3, 3] = -1
    result = compare(_grid(probs), truth, 0.5)
    c = result.metrics.counts
    assert (c.tp, c.fp, c.fn) == (0, 7, 4) and c.total == 48 - 8 - 1
    assert [(r.kind, r.tiles) for r in result.regions] == [("false positive", 6), ("false negative", 4),
                                                           ("false positive", 1)]
    assert result.regions[0].bbox_l0 == (0, 100, 300, 200)
    assert result.regions[1].centre_l0 == (500.0, 500.0)
    assert result.disagreement[0, 0] == NOT_COMPARED and result.disagreement[3, 3] == NOT_COMPARED
    assert result.disagreement[1, 1] == FALSE_POSITIVE and result.disagreement[5, 5] == FALSE_NEGATIVE


def test_truth_follows_the_dataset_rules(slide_pair):
    grid = _grid(np.zeros((6144 // 256, 8192 // 256)))
    grid.stride = grid.tile_l0 = 256
    grid.slide_size = (8192, 6144)
    marks = read_annotations(slide_pair[0].geojson_path).annotations
    full = truth_for_grid(grid, marks, fully_annotated=True)
    partly = truth_for_grid(grid, marks, fully_annotated=False)
    assert (full == 1).sum() == (partly == 1).sum() > 10
    assert (full == 0).sum() > 100 and (partly == 0).sum() == 0


def test_summary_over_slides_sums_the_tiles():
    a = compare(_grid(np.array([[0.9, 0.2], [0.1, 0.7]])), np.array([[1, 0], [0, 0]], np.int8), 0.5, "a")
    b = compare(_grid(np.array([[0.3, 0.8]])), np.array([[1, 1]], np.int8), 0.5, "b")
    summary = summarise([a, b])
    total = summary["total"]
    assert (total["tp"], total["fp"], total["tn"], total["fn"]) == (2, 1, 2, 1)
    assert [row["slide"] for row in summary["slides"]] == ["a", "b"]
    lines = summary_csv(summary).splitlines()
    assert lines[0].startswith("slide,n,tp,fp,tn,fn,sensitivity") and lines[-1].startswith("all slides,6,2,1,2,1")
    assert "Screening test" in summary["table"]


# -- the grid covers the whole slide: edge cells -------------------------------------------------
CROP_W, CROP_H = 1300, 1000  # 256 px tiles: 5 whole columns and 3 whole rows, then 20 px and 232 px strips


@pytest.fixture(scope="module")
def edge_case(slide_pair, small_model):
    """A crop of the unseen slide whose right and bottom edges run through its largest tumour, predicted."""
    from shapely import affinity
    from shapely.geometry import box

    from core.slide import ArrayReader, open_slide

    result = slide_pair[0]
    tumour = max(result.tumour_polygons, key=lambda p: p.area)
    x0, y0 = int(tumour.centroid.x) + 150 - CROP_W, int(tumour.centroid.y) + 150 - CROP_H
    with open_slide(result.slide_path) as reader:
        rgb = reader.read_region(x0, y0, 0, CROP_W, CROP_H)
    frame = box(0, 0, CROP_W, CROP_H)
    marks = [a.__class__(affinity.translate(a.geometry, -x0, -y0).intersection(frame), a.class_name)
             for a in read_annotations(result.geojson_path).annotations]
    marks = [m for m in marks if not m.geometry.is_empty]
    reader = ArrayReader(rgb, mpp=(0.5, 0.5), path="crop.png")
    grid = predict_slide(reader, small_model, device="cpu", batch_size=32)
    return grid, marks, rgb


def test_the_grid_covers_every_pixel_of_a_slide_that_is_no_multiple_of_the_tile(edge_case):
    grid, marks, _ = edge_case
    assert grid.tile_l0 == 256 and grid.shape == (4, 6)  # (3, 5) before edge cells
    assert grid.done.all()  # tissue everywhere in this crop, edge cells included
    painted = np.zeros((CROP_H, CROP_W), int)
    for r in range(4):
        for c in range(6):
            x, y, w, h = grid.cell_rect(r, c)
            assert x + w <= CROP_W and y + h <= CROP_H
            painted[int(y):int(y + h), int(x):int(x + w)] += 1
            tx, ty, tw, _ = grid.tile_rect(r, c)  # the tile read holds the cell, inside the slide
            assert tx <= x and x + w <= tx + tw <= CROP_W and ty <= y and ty + tw <= CROP_H
    assert (painted == 1).all()  # the cells' union is the slide rect, without overlap
    assert grid.cell_rect(3, 5) == (1280.0, 768.0, 20.0, 232.0)
    assert grid.tile_rect(3, 5) == (CROP_W - 256, CROP_H - 256, 256, 256)
    assert grid.cell_at(1299, 999) == (3, 5) and grid.cell_at(1300, 10) is None and grid.cell_at(10, 1000) is None
    xs, ys = grid.tile_positions()
    assert xs.reshape(4, 6)[0].tolist() == [0, 256, 512, 768, 1024, CROP_W - 256]
    assert ys.reshape(4, 6)[:, 0].tolist() == [0, 256, 512, CROP_H - 256]


def test_edge_cells_are_predicted_compared_and_drawn(edge_case, tmp_path):
    from core.inference.heatmap import blended_overview, heatmap_image, tiles_csv, write_overlay_tiff
    from core.slide import open_slide

    grid, marks, rgb = edge_case
    truth = truth_for_grid(grid, marks)
    edge = np.zeros(grid.shape, bool)
    edge[-1, :] = edge[:, -1] = True
    assert (truth[edge] == 1).sum() >= 3 and (truth[-1, -1] == 1)
    assert grid.probs[edge & (truth == 1)].mean() > 0.7  # the tumour in the strips is found
    result = compare(grid, truth, 0.5)
    assert result.metrics.counts.total == int(((truth >= 0) & grid.done).sum())
    assert (result.disagreement[edge] != NOT_COMPARED).sum() == int((edge & (truth >= 0)).sum()) >= 5
    image = heatmap_image(grid, CROP_W, CROP_H, threshold=0.0)
    assert (image[:, 1280:, 3] > 0).all() and (image[768:, :, 3] > 0).all()  # the strips are painted
    assert np.array_equal(image[900, 1290], heatmap_image(grid, CROP_W, CROP_H)[900, 1290])
    overview = blended_overview(rgb, grid, threshold=0.5)
    assert not np.array_equal(overview[768:, 1280:], rgb[768:, 1280:])
    rows = tiles_csv(grid).splitlines()
    assert len(rows) == 1 + 24 and f"3,5,{CROP_W - 256},{CROP_H - 256},256," in rows[-1]
    with open_slide(write_overlay_tiff(grid, tmp_path / "overlay.tif")) as overlay:
        corner = overlay.read_region(CROP_W - 5, CROP_H - 5, 0, 5, 5)[..., 0]
    assert (corner == 1 + round(254 * float(grid.probs[3, 5]))).all()


def test_a_grid_saved_before_edge_cells_loads_and_draws(edge_case, tmp_path):
    import io
    from core.inference.heatmap import heatmap_image

    grid, _, _ = edge_case
    path = grid.save(tmp_path / "new.npz")
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
    assert meta["format_version"] == 2 and meta["edges"] == "shifted"
    # format 1: no edge cells (3 x 5 over the 1300 x 1000 slide) and no "edges" entry
    old_meta = {k: v for k, v in meta.items() if k != "edges"}
    old_meta["format_version"] = 1
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probs=grid.probs[:3, :5], predicted=grid.predicted[:3, :5],
                        meta=np.frombuffer(json.dumps(old_meta).encode("utf-8"), np.uint8))
    (tmp_path / "old.npz").write_bytes(buffer.getvalue())
    old = ProbabilityGrid.load(tmp_path / "old.npz")
    assert old.shape == (3, 5) and np.array_equal(old.probs, grid.probs[:3, :5])
    assert old.cell_rect(2, 4) == (1024.0, 512.0, 256.0, 256.0) and old.tile_rect(2, 4) == (1024, 512, 256, 256)
    assert old.cell_at(1290, 10) is None and old.cell_at(1100, 700) == (2, 4)
    image = heatmap_image(old, CROP_W, CROP_H)
    assert (image[:768, :1280, 3] > 0).all() and (image[:, 1280:, 3] == 0).all() and (image[768:, :, 3] == 0).all()
    truth = truth_for_grid(old, [])
    assert truth.shape == (3, 5)
