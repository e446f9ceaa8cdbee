"""One contract for every slide reader, run over each backend, then what each format adds.

Synthetic slides encode position in their pixels: R = x // 6, G = y // 4 and
B is a 128-pixel checker, so any coordinate's expected colour is known.
"""

from __future__ import annotations

import io
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from core.errors import SlideReadError
from core.slide import LABEL, MACRO, THUMBNAIL, ArrayReader, SlideReader, open_slide
from core.slide.image_reader import ImageReader
from core.slide.openslide_reader import OpenSlideReader
from core.slide.tifffile_reader import TiffFileReader

TESTS = Path(__file__).resolve().parents[2]
CMU = TESTS / "data" / "CMU-1-Small-Region.svs"
SHARED_SLIDES = Path(__file__).resolve().parents[4] / "shared" / "data" / "slides"
W, H = 1536, 1024


def pattern(h: int = H, w: int = W) -> np.ndarray:
    """The synthetic level-0 image: every pixel's colour says where it is."""
    ys, xs = np.mgrid[0:h, 0:w]
    checker = np.where((xs // 128 + ys // 128) % 2 == 1, 230, 40)
    return np.dstack([xs // 6, ys // 4, checker]).astype(np.uint8)


def pyramid(image: np.ndarray, count: int = 3) -> list[np.ndarray]:
    """Level 0 and area-averaged halvings, as a scanner would store them."""
    levels = [image]
    for _ in range(count - 1):
        prev = levels[-1]
        levels.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA))
    return levels


def write_generic_tiff(path: Path, levels, **kwargs) -> Path:
    """A tiled pyramidal TIFF with the reduced levels as further pages (OpenSlide's generic-tiff)."""
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            tw.write(level, tile=(256, 256), photometric="rgb", compression="zlib",
                     subfiletype=1 if i else 0, **(kwargs if i == 0 else {}))
    return path


def rgb_profile(gamma: float = 1.0) -> bytes:
    """A minimal ICC v2 RGB display profile: sRGB primaries, a linear (gamma 1.0) tone curve."""
    def s15(*values):
        return struct.pack(">3i", *(round(v * 65536) for v in values))

    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    name = b"Biopsia test linear RGB\0"
    d50 = (0.9642, 1.0, 0.8249)
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 78),
            (b"cprt", b"text\0\0\0\0public domain\0"), (b"wtpt", b"XYZ \0\0\0\0" + s15(*d50)),
            (b"rXYZ", b"XYZ \0\0\0\0" + s15(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", b"XYZ \0\0\0\0" + s15(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", b"XYZ \0\0\0\0" + s15(0.1431, 0.0606, 0.7141)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I4sI4s4s4s", offset + len(data), b"\0" * 4, 0x02100000, b"mntr", b"RGB ", b"XYZ ")
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + s15(*d50) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """The synthetic slide written in every layout the contract covers."""
    folder = tmp_path_factory.mktemp("contract")
    levels = pyramid(pattern())
    write_generic_tiff(folder / "generic.tif", levels, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(folder / "pyramid.ome.tif", ome=True) as tw:
        tw.write(levels[0], subifds=len(levels) - 1, tile=(256, 256), photometric="rgb", compression="zlib",
                 metadata={"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(256, 256), photometric="rgb", compression="zlib")
    tifffile.imwrite(folder / "strip.tif", levels[0], photometric="rgb", rowsperstrip=64)
    tifffile.imwrite(folder / "strip-lzw.tif", levels[0], photometric="rgb", rowsperstrip=100, compression="lzw")
    cv2.imwrite(str(folder / "slide.png"), cv2.cvtColor(levels[0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "slide.jpg"), cv2.cvtColor(levels[0], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


@dataclass(frozen=True)
class Case:
    """One backend over one file: how to open it and what to expect."""

    name: str
    open: Callable[[Path], SlideReader]
    known: bool = True  # pixels follow pattern()
    tol: float = 0.0  # mean absolute error allowed (lossy compression)


CASES = [
    Case("openslide-svs", lambda d: OpenSlideReader(CMU), known=False, tol=3.0),
    Case("openslide-tiff", lambda d: OpenSlideReader(d / "generic.tif")),
    Case("tifffile-ome", lambda d: TiffFileReader(d / "pyramid.ome.tif")),
    Case("tifffile-strip", lambda d: TiffFileReader(d / "strip.tif")),
    Case("tifffile-strip-lzw", lambda d: TiffFileReader(d / "strip-lzw.tif")),
    Case("image-png", lambda d: ImageReader(d / "slide.png")),
    Case("image-jpeg", lambda d: ImageReader(d / "slide.jpg"), tol=2.0),
    Case("array", lambda d: ArrayReader(pattern())),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request, synthetic):
    """(Case, freshly opened reader), closed after the test."""
    reader = request.param.open(synthetic)
    yield request.param, reader
    reader.close()


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


class TestReaderContract:
    def test_levels_are_consistent(self, case):
        _, r = case
        assert r.level_count >= 1 and len(r.level_dimensions) == len(r.level_downsamples) == r.level_count
        assert r.level_downsamples[0] == pytest.approx(1.0)
        assert all(b > a for a, b in zip(r.level_downsamples, r.level_downsamples[1:]))
        l0_w, l0_h = r.dimensions
        for (lv_w, lv_h), ds in zip(r.level_dimensions, r.level_downsamples):
            assert lv_w == pytest.approx(l0_w / ds, rel=0.02, abs=2)
            assert lv_h == pytest.approx(l0_h / ds, rel=0.02, abs=2)
        assert r.best_level_for_downsample(1.0) == 0
        assert r.best_level_for_downsample(1e9) == r.level_count - 1

    def test_read_region_shape_and_dtype(self, case):
        _, r = case
        for level in range(r.level_count):
            region = r.read_region(37, 51, level, 73, 41)
            assert region.shape == (41, 73, 3) and region.dtype == np.uint8

    def test_outside_the_image_is_white(self, case):
        c, r = case
        l0_w, l0_h = r.dimensions
        for level in range(r.level_count):
            assert (r.read_region(l0_w + 10, 0, level, 32, 32) == 255).all()
            assert (r.read_region(0, l0_h + 10, level, 32, 32) == 255).all()
            assert (r.read_region(-10_000, -10_000, level, 32, 32) == 255).all()
        corner = r.read_region(-100, -60, 0, 200, 120)
        assert (corner[:60] == 255).all() and (corner[:, :100] == 255).all()
        if c.known:
            assert mean_error(corner[60:, 100:], pattern()[:60, :100]) <= c.tol + 0.01
        right = r.read_region(l0_w - 50, 0, 0, 100, 20)
        assert (right[:, 50:] == 255).all()

    def test_level0_pixels_are_where_they_should_be(self, case):
        c, r = case
        if not c.known:  # the real slide: H&E-stained tissue (pink and purple) in the middle
            red, green, blue = r.read_region(1000, 1400, 0, 256, 256).reshape(-1, 3).mean(axis=0)
            assert red > green + 20 and blue > green + 20
            return
        truth = pattern()
        for x, y in [(0, 0), (300, 700), (1000, 129), (W - 20, H - 12)]:
            got = r.read_region(x, y, 0, 16, 8)
            if c.tol == 0:
                np.testing.assert_array_equal(got, truth[y : y + 8, x : x + 16])
            assert mean_error(got, truth[y : y + 8, x : x + 16]) <= c.tol
        # The exact colour at one coordinate: R = x // 6, G = y // 4, B = checker.
        assert tuple(r.read_region(605, 402, 0, 1, 1)[0, 0]) == pytest.approx((100, 100, 230), abs=3 if c.tol else 0)

    def test_each_level_shows_the_downsampled_level0(self, case):
        c, r = case
        l0_x, l0_y, lv_size = 256, 256, 64
        for level in range(1, r.level_count):
            ds = r.level_downsamples[level]
            l0_size = round(lv_size * ds)
            l0 = r.read_region(l0_x, l0_y, 0, l0_size, l0_size)
            expected = cv2.resize(l0, (lv_size, lv_size), interpolation=cv2.INTER_AREA)
            got = r.read_region(l0_x, l0_y, level, lv_size, lv_size)
            assert mean_error(got, expected) <= 2.0 + c.tol, f"level {level} (downsample {ds})"

    def test_thumbnail_keeps_the_aspect(self, case):
        _, r = case
        thumb = r.get_thumbnail((256, 256))
        l0_w, l0_h = r.dimensions
        assert thumb.dtype == np.uint8 and thumb.shape[2] == 3 and max(thumb.shape[:2]) == 256
        assert thumb.shape[1] / thumb.shape[0] == pytest.approx(l0_w / l0_h, rel=0.02)

    def test_thumbnail_read_in_blocks_or_sampled_matches_one_read(self, case, monkeypatch):
        import core.slide.overview as overview

        _, r = case
        whole = r.get_thumbnail((256, 256))
        monkeypatch.setattr(overview, "THUMBNAIL_ONE_READ_PIXELS", 0)  # every level in blocks of 200 px
        monkeypatch.setattr(overview, "THUMBNAIL_BLOCK", 200)
        assert mean_error(r.get_thumbnail((256, 256)), whole) < 3
        monkeypatch.setattr(overview, "THUMBNAIL_BUDGET_PIXELS", 0)  # every level sampled: still the same picture
        sampled = r.get_thumbnail((256, 256))
        assert sampled.shape == whole.shape
        coarse = lambda img: cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA)  # noqa: E731
        assert mean_error(coarse(sampled), coarse(whole)) < 12

    def test_context_manager_closes(self, case, synthetic):
        c, _ = case
        with c.open(synthetic) as r:
            r.read_region(0, 0, 0, 8, 8)
        assert r.closed
        with pytest.raises(SlideReadError):
            r.read_region(0, 0, 0, 8, 8)

    def test_concurrent_reads_match_serial_reads(self, case):
        _, r = case
        l0_w, l0_h = r.dimensions
        rng = np.random.default_rng(5)
        requests = [(int(rng.integers(-64, l0_w)), int(rng.integers(-64, l0_h)), int(rng.integers(r.level_count)),
                     int(rng.integers(16, 200)), int(rng.integers(16, 200))) for _ in range(64)]
        serial = [r.read_region(*req) for req in requests]
        with ThreadPoolExecutor(8) as pool:
            parallel = list(pool.map(lambda req: r.read_region(*req), requests * 2))
        for i, region in enumerate(parallel):
            np.testing.assert_array_equal(region, serial[i % len(requests)])

    def test_info_and_associated_images(self, case):
        _, r = case
        info = r.info().to_dict()
        assert info["dimensions"] == r.dimensions and info["backend"] == r.backend
        for name in r.associated_image_names:
            image = r.associated_image(name)
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        with pytest.raises(KeyError):
            r.associated_image("no-such-image")


class TestCmuSlide:
    def test_metadata(self):
        with open_slide(CMU) as r:
            assert r.backend == "openslide" and r.vendor == "aperio"
            assert r.dimensions == (2220, 2967)
            assert r.mpp == pytest.approx((0.499, 0.499), abs=1e-3)
            assert r.objective_power == 20
            assert {LABEL, MACRO, THUMBNAIL} <= set(r.associated_image_names)
            assert r.associated_image(LABEL).shape[2] == 3

    def test_has_no_embedded_icc_profile(self):
        with OpenSlideReader(CMU) as r:
            assert r.icc_profile is None and not r.apply_icc and not r.info().has_icc_profile

    def test_tifffile_reads_the_same_slide(self):
        with OpenSlideReader(CMU) as a, TiffFileReader(CMU) as b:
            assert b.vendor == "aperio" and b.dimensions == a.dimensions
            assert b.mpp == pytest.approx(a.mpp) and b.objective_power == a.objective_power
            assert mean_error(a.read_region(800, 1200, 0, 300, 300), b.read_region(800, 1200, 0, 300, 300)) < 3


def test_dicom_opens_from_either_file():
    if not SHARED_SLIDES.is_dir():
        pytest.skip(f"shared vendor slides not found at {SHARED_SLIDES}")
    import openslide

    if openslide.OpenSlide.detect_format(str(SHARED_SLIDES / "boxes_0.dcm")) != "dicom":
        pytest.skip(f"OpenSlide {openslide.__library_version__} cannot read DICOM")
    with open_slide(SHARED_SLIDES / "boxes_0.dcm") as a, open_slide(SHARED_SLIDES / "boxes_1.dcm") as b:
        # boxes_1.dcm is the series' THUMBNAIL instance, not a second pyramid level.
        assert a.backend == "openslide" and a.vendor == "dicom"
        assert a.level_dimensions == b.level_dimensions == ((16, 16),)
        assert THUMBNAIL in a.associated_image_names
        np.testing.assert_array_equal(a.read_region(0, 0, 0, 16, 16), b.read_region(0, 0, 0, 16, 16))


@pytest.mark.parametrize("reader_class", [OpenSlideReader, TiffFileReader])
def test_icc_profile_can_be_toggled(tmp_path, reader_class):
    icc = rgb_profile()
    path = write_generic_tiff(tmp_path / "icc.tif", pyramid(pattern(512, 768), 2),
                              extratags=[(34675, 7, len(icc), icc, True)])
    with reader_class(path) as r:
        assert r.icc_profile == icc and r.apply_icc
        managed = r.read_region(0, 0, 0, 128, 128)
        r.apply_icc = False
        raw = r.read_region(0, 0, 0, 128, 128)
        np.testing.assert_array_equal(raw, pattern(128, 128))
        assert mean_error(managed, raw) > 20  # linear light shown as sRGB is much brighter
        expected = ImageCms.applyTransform(Image.fromarray(raw), ImageCms.buildTransform(
            ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), "RGB", "RGB"))
        assert mean_error(managed, np.asarray(expected)) <= 1


@pytest.mark.parametrize("reader_class", [OpenSlideReader, TiffFileReader])
def test_a_broken_icc_profile_does_not_stop_reading(tmp_path, reader_class):
    junk = b"not an ICC profile" * 8
    path = write_generic_tiff(tmp_path / "bad-icc.tif", [pattern(256, 256)],
                              extratags=[(34675, 7, len(junk), junk, True)])
    with reader_class(path) as r:
        np.testing.assert_array_equal(r.read_region(0, 0, 0, 64, 64), pattern(64, 64))
        assert r.icc_error


@pytest.mark.parametrize("reader_class", [OpenSlideReader, TiffFileReader])
def test_editor_default_resolution_is_not_a_calibration(tmp_path, reader_class):
    path = write_generic_tiff(tmp_path / "72dpi.tif", [pattern(256, 256)], resolution=(72, 72), resolutionunit="INCH")
    with reader_class(path) as r:
        assert r.mpp is None  # 72 dpi would be 352.8 µm per pixel


def test_tifffile_metadata(synthetic, tmp_path):
    with TiffFileReader(synthetic / "pyramid.ome.tif") as r:
        assert r.vendor == "ome-tiff" and r.mpp == pytest.approx((0.5, 0.5)) and r.level_count == 3
    with TiffFileReader(synthetic / "generic.tif") as r:
        assert r.mpp == pytest.approx((0.25, 0.25))
    tifffile.imwrite(tmp_path / "inch.tif", pattern(64, 64), photometric="rgb", resolution=(101600, 50800),
                     resolutionunit="INCH")
    with TiffFileReader(tmp_path / "inch.tif") as r:
        assert r.mpp == pytest.approx((0.25, 0.5))
    ome = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="40"/></Instrument>'
           '<Image ID="Image:0"><ObjectiveSettings ID="Objective:0"/><Pixels ID="Pixels:0" DimensionOrder="XYCZT" '
           'Type="uint8" SizeX="64" SizeY="48" SizeC="3" SizeZ="1" SizeT="1" Interleaved="true" '
           'PhysicalSizeX="250" PhysicalSizeXUnit="nm" PhysicalSizeY="250" PhysicalSizeYUnit="nm">'
           '<Channel ID="Channel:0:0" SamplesPerPixel="3"/><TiffData/></Pixels></Image></OME>')
    tifffile.imwrite(tmp_path / "objective.ome.tif", pattern(48, 64), photometric="rgb", description=ome, metadata=None)
    with TiffFileReader(tmp_path / "objective.ome.tif") as r:
        assert r.vendor == "ome-tiff" and r.objective_power == 40 and r.mpp == pytest.approx((0.25, 0.25))


def _layouts():
    """(name, data, imwrite kwargs, expected RGB at pixel (x=10, y=20) of the stored image)."""
    grey = pattern(64, 96)[:, :, 0]
    rgba = np.dstack([pattern(64, 96), np.full((64, 96), 128, np.uint8)])
    palette = (np.arange(256, dtype=np.uint16)[None, :] * np.array([[257], [0], [128]], np.uint16))
    return [
        ("grey", grey, {}, (1, 1, 1)),
        ("miniswhite", grey, {"photometric": "miniswhite"}, (254, 254, 254)),
        ("rgba-half", rgba, {"photometric": "rgb", "extrasamples": ["unassalpha"]}, (128, 130, 148)),
        ("separate", np.moveaxis(pattern(64, 96), -1, 0), {"photometric": "rgb", "planarconfig": "separate",
                                                            "tile": (32, 32)}, (1, 5, 40)),
        ("palette", grey, {"photometric": "palette", "colormap": palette}, (1, 0, 0)),
    ]


@pytest.mark.parametrize("name,data,kwargs,expected", _layouts(), ids=[lay[0] for lay in _layouts()])
def test_tifffile_colour_layouts(tmp_path, name, data, kwargs, expected):
    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, data, **kwargs)
    with TiffFileReader(path) as r:
        assert r.dimensions == (96, 64)
        assert tuple(r.read_region(10, 20, 0, 1, 1)[0, 0]) == pytest.approx(expected, abs=2)


def test_tifffile_16bit_is_scaled_once_per_slide(tmp_path):
    stored = np.moveaxis(pattern(), -1, 0).astype(np.uint16) * 100
    tifffile.imwrite(tmp_path / "cyx.ome.tif", stored, ome=True, tile=(256, 256), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "rgb16.tif", pattern().astype(np.uint16) * 257, photometric="rgb", tile=(256, 256))
    with TiffFileReader(tmp_path / "cyx.ome.tif") as r:
        got = r.read_region(0, 0, 0, W, H).astype(int)
    # One linear mapping for the slide: the brightest values of the smallest level (about 255 * 100) become 255.
    assert np.corrcoef(got.ravel(), pattern().astype(int).ravel())[0, 1] > 0.999
    assert got.max() >= 250 and got.min() <= 1
    with TiffFileReader(tmp_path / "rgb16.tif") as r:
        assert mean_error(r.read_region(0, 0, 0, W, H), pattern()) < 1.5
        # Tiles read one at a time use the same mapping as the whole level.
        whole = r.read_region(0, 0, 0, W, H)
        np.testing.assert_array_equal(r.read_region(512, 256, 0, 64, 64), whole[256:320, 512:576])


def test_image_reader_resolution_and_formats(tmp_path):
    rgb = pattern(64, 96)
    Image.fromarray(rgb).save(tmp_path / "calibrated.png", dpi=(50800, 50800))  # 0.5 µm per pixel
    Image.fromarray(rgb).save(tmp_path / "editor.png", dpi=(72, 72))
    Image.fromarray(rgb).save(tmp_path / "editor.jpg", dpi=(96, 96), quality=95)
    with ImageReader(tmp_path / "calibrated.png") as r:
        assert r.vendor == "png" and r.mpp == pytest.approx((0.5, 0.5), rel=1e-3)
    with ImageReader(tmp_path / "editor.png") as a, ImageReader(tmp_path / "editor.jpg") as b:
        assert a.mpp is None and b.mpp is None and b.vendor == "jpeg"
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    rgba = np.dstack([rgb, np.zeros((64, 96), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    cv2.imwrite(str(tmp_path / "image.bmp"), rgb[:, :, 0])
    with ImageReader(tmp_path / "deep.png") as r:
        np.testing.assert_array_equal(r.read_region(0, 0, 0, 96, 64), rgb)
    with ImageReader(tmp_path / "clear.png") as r:
        assert (r.read_region(0, 0, 0, 96, 64) == 255).all()  # fully transparent shows as glass
    with ImageReader(tmp_path / "image.bmp") as r:
        assert r.vendor == "bmp" and tuple(r.read_region(10, 20, 0, 1, 1)[0, 0]) == (1, 1, 1)


def test_a_close_that_outwaits_a_read_never_frees_the_backend_under_it():
    """A read still running when close() gives up waiting keeps its backend; the read's end releases it."""
    import threading

    started, go_on = threading.Event(), threading.Event()
    released = []

    class SlowReader(ArrayReader):
        def _read_region_raw(self, *args):
            started.set()
            go_on.wait(10)
            return super()._read_region_raw(*args)

        def _close(self):
            released.append(self._active_reads)
            super()._close()

    reader = SlowReader(pattern(256, 256))
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(reader.read_region, 0, 0, 0, 64, 64)
        assert started.wait(10)
        reader.close(timeout=0.01)
        assert reader.closed and released == []  # the backend stays while the read uses it
        with pytest.raises(SlideReadError, match="closed"):
            reader.read_region(0, 0, 0, 8, 8)
        go_on.set()
        assert read.result(10).shape == (64, 64, 3)
    assert released == [0]  # released once, by the last read, when none was running


def test_readers_say_how_their_levels_are_stored(tmp_path):
    """The stored block size that prediction orders its reads by; None where a reader cannot know it."""
    for reader_class in (OpenSlideReader, TiffFileReader):
        with reader_class(CMU) as reader:
            assert reader.stored_tile_size(0) == (240, 240), reader_class
    strips = tmp_path / "strips.tif"
    tifffile.imwrite(strips, pattern(64, 96), photometric="rgb", rowsperstrip=16)
    with TiffFileReader(strips) as reader:
        assert reader.stored_tile_size(0) == (96, 16)
    assert ArrayReader(pattern(64, 96), mpp=(0.5, 0.5)).stored_tile_size(0) is None
