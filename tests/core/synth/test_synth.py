"""The synthetic slide generator: file layout, readers, determinism, ground truth, texture, cancelling."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import openslide
import pytest
import shapely
import tifffile
from shapely.geometry import shape

from core.errors import BiopsiaError
from core.synth import SynthResult, write_synthetic_slide

W, H = 3000, 2000


PROGRESS: list[tuple[int, int]] = []


@pytest.fixture(scope="module")
def generic(tmp_path_factory) -> SynthResult:
    return write_synthetic_slide(tmp_path_factory.mktemp("generic") / "synth.tiff", seed=3, width=W, height=H,
                                 progress=lambda done, total: PROGRESS.append((done, total)))


@pytest.fixture(scope="module")
def svs(tmp_path_factory) -> SynthResult:
    return write_synthetic_slide(tmp_path_factory.mktemp("svs") / "synth.svs", seed=5, width=W, height=H)


@pytest.fixture(scope="module")
def level0(generic) -> np.ndarray:
    return tifffile.imread(generic.slide_path, key=0)


def _os_read(slide: openslide.OpenSlide, l0_x: int, l0_y: int, level: int, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(slide.read_region((l0_x, l0_y), level, size).convert("RGB"))


def _mask(polygons, width: int, height: int) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    for poly in polygons:
        cv2.fillPoly(canvas, [np.round(np.asarray(poly.exterior.coords)).astype(np.int32)], 1)
    return canvas.astype(bool)


# -- the file ----------------------------------------------------------------------
def test_openslide_reads_generic_tiff(generic):
    with openslide.OpenSlide(generic.slide_path) as slide:
        assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "generic-tiff"
        assert slide.level_count > 1
        assert slide.dimensions == (W, H)
        assert slide.level_dimensions[1] == (math.ceil(W / 4), math.ceil(H / 4))
        assert max(slide.level_dimensions[-1]) <= 1000
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5, rel=1e-3)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.5, rel=1e-3)


def test_pages_are_jpeg_tiles_with_resolution(generic):
    with tifffile.TiffFile(generic.slide_path) as tif:
        pages = list(tif.pages)
        assert "Biopsia synthetic slide seed=3 mpp=0.5" in pages[0].description
        for i, page in enumerate(pages):
            assert page.is_tiled and (page.tilewidth, page.tilelength) == (512, 512)
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            x_res = page.tags["XResolution"].value
            downsample = W / page.imagewidth
            assert 1e4 / (x_res[0] / x_res[1]) == pytest.approx(0.5 * downsample, rel=1e-3)
            assert bool(page.subfiletype & 1) == (i > 0)
        assert len(tif.series) == 1 and len(tif.series[0].levels) == len(pages)


def test_tifffile_and_openslide_agree(generic, level0):
    tumour = generic.tumour_polygons[0].representative_point()
    l0_x, l0_y = int(tumour.x) // 512 * 512, int(tumour.y) // 512 * 512
    with openslide.OpenSlide(generic.slide_path) as slide:
        by_openslide = _os_read(slide, l0_x, l0_y, 0, (512, 512))
        lv_w, lv_h = slide.level_dimensions[1]
        lower = _os_read(slide, 0, 0, 1, (lv_w, lv_h))
    by_tifffile = level0[l0_y:l0_y + 512, l0_x:l0_x + 512]
    assert by_openslide.shape == by_tifffile.shape
    assert np.abs(by_openslide.astype(int) - by_tifffile.astype(int)).max() <= 3
    assert np.abs(lower.astype(int) - tifffile.imread(generic.slide_path, key=1).astype(int)).max() <= 3


def test_no_seams_at_tile_borders(level0):
    gray = level0.astype(np.float32).mean(axis=2)
    step_at_border = np.abs(gray[:, 1023] - gray[:, 1024]).mean()
    step_inside = np.abs(gray[:, 1000] - gray[:, 1001]).mean()
    assert step_at_border < 2 * step_inside + 2


# -- determinism -----------------------------------------------------------------
def test_same_seed_same_pixels_other_seed_differs(tmp_path, level0):
    again = write_synthetic_slide(tmp_path / "synth.tiff", seed=3, width=W, height=H)
    assert np.array_equal(tifffile.imread(again.slide_path, key=0), level0)
    other = write_synthetic_slide(tmp_path / "other.tiff", seed=4, width=W, height=H)
    differs = tifffile.imread(other.slide_path, key=0).astype(int) - level0.astype(int)
    assert np.abs(differs).mean() > 5


# -- ground truth ----------------------------------------------------------------
def test_geojson_is_qupath_tumour_annotations(generic):
    data = json.loads(generic.geojson_path.read_text())
    assert generic.geojson_path == generic.slide_path.with_suffix(".geojson")
    assert data["type"] == "FeatureCollection" and len(data["features"]) >= 1
    tissue = shapely.union_all(generic.tissue_polygons)
    for feature in data["features"]:
        assert feature["properties"] == {"objectType": "annotation",
                                         "classification": {"name": "Tumour", "color": [200, 0, 0]},
                                         "isLocked": False}
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
        rings = feature["geometry"]["coordinates"]
        rings = rings if feature["geometry"]["type"] == "Polygon" else [r for p in rings for r in p]
        assert all(ring[0] == ring[-1] for ring in rings)
        geom = shape(feature["geometry"])
        assert geom.is_valid and geom.area > 0
        x0, y0, x1, y1 = geom.bounds
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        assert geom.difference(tissue).area < 0.01 * geom.area
    gt = shapely.union_all([shape(f["geometry"]) for f in data["features"]])
    assert gt.symmetric_difference(shapely.union_all(generic.tumour_polygons)).area < 0.01 * gt.area


def test_tumour_is_tissue_and_glass_is_white(generic, level0):
    tumour = _mask(generic.tumour_polygons, W, H)
    tissue = _mask(generic.tissue_polygons, W, H)
    assert tumour.sum() > 0.02 * W * H
    assert (tumour & ~tissue).sum() < 0.01 * tumour.sum()
    assert level0[tumour].mean(axis=0).max() < 215  # stained, not glass
    far = cv2.distanceTransform((~tissue).astype(np.uint8), cv2.DIST_L2, 5) > 100
    glass = level0[far].astype(np.float64)
    assert far.sum() > 0.3 * W * H
    assert glass.mean(axis=0).min() > 238 and glass.mean(axis=0).max() < 250
    assert glass.std(axis=0).max() < 4


def test_tumour_differs_in_texture_not_in_mean_colour(generic, level0):
    tissue = shapely.union_all(generic.tissue_polygons)
    tumour = shapely.union_all(generic.tumour_polygons)
    inside_tumour = tumour.buffer(-8)
    benign = tissue.difference(tumour.buffer(150)).buffer(-8)
    stats: dict[str, list] = {"tumour": [], "benign": []}
    size = 128
    for l0_y in range(0, H - size + 1, size // 2):
        for l0_x in range(0, W - size + 1, size // 2):
            box = shapely.box(l0_x, l0_y, l0_x + size, l0_y + size)
            for name, region in (("tumour", inside_tumour), ("benign", benign)):
                if region.contains(box):
                    patch = level0[l0_y:l0_y + size, l0_x:l0_x + size].astype(np.float64)
                    gray = patch.mean(axis=2)
                    stats[name].append((*patch.reshape(-1, 3).mean(axis=0), (gray < 140).mean(), gray.std()))
    assert len(stats["tumour"]) >= 5 and len(stats["benign"]) >= 5
    tum, ben = np.mean(stats["tumour"], axis=0), np.mean(stats["benign"], axis=0)
    assert tum[3] > 2.5 * ben[3], "tumour should hold many more dark (nuclear) pixels"
    assert tum[4] > 1.3 * ben[4], "tumour should be more heterogeneous"
    assert np.abs(tum[:3] - ben[:3]).max() < 25, "mean colours should stay close"


# -- the Aperio layout ----------------------------------------------------------------
def test_svs_layout_is_read_as_aperio(svs):
    with openslide.OpenSlide(svs.slide_path) as slide:
        props = slide.properties
        assert props[openslide.PROPERTY_NAME_VENDOR] == "aperio"
        assert props["aperio.AppMag"] == "20" and props[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "20"
        assert float(props["aperio.MPP"]) == pytest.approx(0.5)
        assert float(props[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        assert {"label", "macro", "thumbnail"} <= set(slide.associated_images)
        label = np.asarray(slide.associated_images["label"].convert("RGB"))
        assert label.min() < 60 and label.max() > 200  # dark barcode and text on a light label
        thumb = slide.associated_images["thumbnail"]
        assert max(thumb.size) <= 1024 and thumb.size[0] / thumb.size[1] == pytest.approx(W / H, rel=0.01)
        assert slide.level_count > 1 and slide.dimensions == (W, H)
        region = _os_read(slide, 1024, 512, 0, (512, 512))
    with tifffile.TiffFile(svs.slide_path) as tif:
        pages = list(tif.pages)
        assert pages[0].is_tiled and not pages[1].is_tiled
        assert "label" in pages[-2].description and "macro" in pages[-1].description
        assert not pages[-2].is_tiled and not pages[-1].is_tiled
        assert [series.name for series in tif.series] == ["Baseline", "Thumbnail", "Label", "Macro"]
        assert len(tif.series[0].levels) == len(pages) - 3
        stored = pages[0].asarray()[512:1024, 1024:1536]
    assert np.abs(region.astype(int) - stored.astype(int)).max() <= 3


def test_svs_objective_power_follows_mpp(tmp_path):
    result = write_synthetic_slide(tmp_path / "forty.tif", seed=1, width=1200, height=900, mpp=0.25, svs=True)
    with openslide.OpenSlide(result.slide_path) as slide:
        assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
        assert slide.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "40"
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25)


# -- progress, cancelling, bad input -------------------------------------------------
def test_progress_counts_every_tile(generic):
    tiles = math.ceil(W / 512) * math.ceil(H / 512) + math.ceil(W / 4 / 512) * math.ceil(H / 4 / 512)
    assert PROGRESS == [(done, tiles) for done in range(1, tiles + 1)]


def test_should_stop_cancels_and_leaves_nothing(tmp_path):
    calls = []
    with pytest.raises(BiopsiaError, match="cancelled"):
        write_synthetic_slide(tmp_path / "cancelled.tiff", seed=2, width=W, height=H,
                              progress=lambda done, total: calls.append(done),
                              should_stop=lambda: len(calls) >= 3)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [
    {"width": 100}, {"height": 255}, {"width": 200_001}, {"width": 1000.5},
    {"mpp": 0.05}, {"mpp": 0}, {"mpp": 20.5}, {"mpp": float("nan")},
    {"seed": -1}, {"tile": 500}, {"quality": 0},
])
def test_bad_arguments_raise_value_error(tmp_path, kwargs):
    args = {"width": 1000, "height": 800, **kwargs}
    with pytest.raises(ValueError):
        write_synthetic_slide(tmp_path / "bad.tiff", **args)
    assert list(tmp_path.iterdir()) == []


def test_bad_suffix_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"\.svs"):
        write_synthetic_slide(tmp_path / "slide.png", width=1000, height=800)


def test_missing_or_unusable_folder_raises_os_error(tmp_path):
    missing = tmp_path / "no" / "such" / "folder" / "slide.tiff"
    with pytest.raises(OSError, match="folder"):
        write_synthetic_slide(missing, width=1000, height=800)
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    with pytest.raises(OSError) as err:
        write_synthetic_slide(a_file / "slide.tiff", width=1000, height=800)
    assert str(a_file) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
