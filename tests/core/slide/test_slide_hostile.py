"""Hostile and damaged slide files: refused at once with a SlideError that names the file and the problem,
or read in bounded memory with only the damaged regions failing. Never a hang, a traceback or gigabytes."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile

from core.errors import SlideError, SlideReadError
from core.slide import open_slide
from core.slide import open as open_module
from core.slide.base import MAX_REGION_PIXELS
from core.slide.overview import DAMAGED_GREY, SALVAGE_BLOCK, read_salvaged
from core.slide.openslide_reader import OpenSlideReader
from core.slide.tiff_check import MAX_DIRECTORIES
from core.slide.tifffile_reader import TiffFileReader
from deadline import DEADLINE_S
from deadline import within_deadline as bounded
from hostile_tiffs import TAGS, clear_entries, ifd_offsets, set_next, set_tag, write_sparse_tiff

TESTS = Path(__file__).resolve().parents[2]
ROOT = TESTS.parent
CMU = TESTS / "data" / "CMU-1-Small-Region.svs"
SHARED_SLIDES = TESTS.parents[1] / "shared" / "data" / "slides"
#: A hang guard: each of these takes well under a second.


def refusal(opener, path: Path) -> SlideError:
    """The SlideError that opening ``path`` with ``opener`` must raise, naming the file."""
    reader, error = bounded(opener, path)
    if reader is not None:
        reader.close()
    assert isinstance(error, SlideError), f"expected a SlideError, got {error!r}"
    assert path.name in str(error)
    return error


def edited(source: Path, out: Path, edit) -> Path:
    """A copy of ``source`` with ``edit(bytearray)`` applied."""
    data = bytearray(source.read_bytes())
    edit(data)
    out.write_bytes(bytes(data))
    return out


def many_pages(path: Path, count: int, big: bool = False, order: str = "<") -> Path:
    """A TIFF of ``count`` small pages, each its own series (as tifffile parses them)."""
    with tifffile.TiffWriter(path, bigtiff=big, byteorder=order) as tw:
        for i in range(count):
            tw.write(np.full((16, 16), i % 256, np.uint8), contiguous=False)
    return path


@pytest.fixture
def shared():
    if not SHARED_SLIDES.is_dir():
        pytest.skip(f"shared vendor slides not found at {SHARED_SLIDES}")
    return SHARED_SLIDES


# -- directory chains ------------------------------------------------------------------------------
@pytest.mark.parametrize("big,order", [(False, "<"), (False, ">"), (True, "<"), (True, ">")])
def test_a_directory_chain_that_loops_is_refused_not_followed_for_ever(tmp_path, big, order):
    # tifffile looks for a loop only at its hundredth directory: a longer loop it followed for ever.
    path = many_pages(tmp_path / "loop.tif", 120, big, order)
    offsets = ifd_offsets(path.read_bytes(), 200)
    assert len(offsets) == 120
    edited(path, path, lambda data: set_next(data, offsets[-1], offsets[0]))
    for opener in (open_slide, TiffFileReader):
        err = refusal(opener, path)
        assert "loop" in str(err) and "directory 119 points back to directory 0" in str(err)


def test_an_svs_whose_last_directory_points_back_to_the_first(tmp_path):
    offsets = ifd_offsets(CMU.read_bytes())
    path = edited(CMU, tmp_path / "loop.svs", lambda data: set_next(data, offsets[-1], offsets[0]))
    err = refusal(open_slide, path)
    assert "loop" in str(err) and "damaged" in str(err)


def test_a_directory_pointing_to_itself(tmp_path):
    path = tmp_path / "self.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), tile=(32, 32), photometric="rgb")
    offsets = ifd_offsets(path.read_bytes())
    edited(path, path, lambda data: set_next(data, offsets[0], offsets[0]))
    assert "directory 0 points back to directory 0" in str(refusal(open_slide, path))


def test_too_many_directories_are_refused_before_tifffile_parses_them(tmp_path):
    # tifffile's series parsing is quadratic in directories: 20,000 took 71 s.
    path = many_pages(tmp_path / "pages.tif", MAX_DIRECTORIES + 1)
    assert f"more than {MAX_DIRECTORIES:,} image directories" in str(refusal(open_slide, path))


def test_a_next_directory_past_the_end_is_called_truncated(tmp_path):
    path = many_pages(tmp_path / "cut.tif", 3)
    offsets = ifd_offsets(path.read_bytes())
    edited(path, path, lambda data: set_next(data, offsets[1], len(data) + 1000))
    err = refusal(open_slide, path)
    assert "truncated" in str(err) and "directory 1 points to byte" in str(err)


# -- declared sizes ------------------------------------------------------------------------------
def test_an_svs_level_claiming_more_than_its_tile_table_holds_is_refused(tmp_path):
    # 1.9 MB claiming 100,000 px: a region read took 6.6 GB, the overview 9.5 GB and 62 s
    def widen(data):
        assert set_tag(data, ifd_offsets(data)[0], TAGS["ImageWidth"], 100_000)

    err = refusal(open_slide, edited(CMU, tmp_path / "wide.svs", widen))
    assert "100,000 x 2,967 px" in str(err) and "TileOffsets lists 130" in str(err)


@pytest.mark.parametrize("tag", ["TileWidth", "TileLength"])
def test_a_tile_size_of_zero_is_a_clear_error(tmp_path, tag):
    path = tmp_path / "zero.tif"
    tifffile.imwrite(path, np.zeros((256, 256, 3), np.uint8), tile=(128, 128), photometric="rgb")
    edited(path, path, lambda data: set_tag(data, ifd_offsets(data)[0], TAGS[tag], 0))
    for opener in (open_slide, TiffFileReader):  # was ZeroDivisionError
        assert "tiles of" in str(refusal(opener, path))


def test_a_tile_too_large_to_decode_is_refused(tmp_path):
    path = tmp_path / "giant-tile.tif"
    tifffile.imwrite(path, np.zeros((256, 256, 3), np.uint8), tile=(128, 128), photometric="rgb",
                     compression="zlib")

    def giant(data):
        ifd = ifd_offsets(data)[0]
        set_tag(data, ifd, TAGS["TileWidth"], 60_000)
        set_tag(data, ifd, TAGS["TileLength"], 60_000)

    err = refusal(open_slide, edited(path, path, giant))
    assert "60,000 x 60,000 px" in str(err) and "MB" in str(err)


@pytest.mark.parametrize("which", [0, -1])
def test_an_empty_directory_is_a_clear_error(tmp_path, which):
    path = many_pages(tmp_path / "empty.tif", 2)
    edited(path, path, lambda data: clear_entries(data, ifd_offsets(data)[which]))
    for opener in (open_slide, TiffFileReader):  # was ZeroDivisionError
        assert "empty" in str(refusal(opener, path))


@pytest.mark.parametrize("big,order", [(False, "<"), (True, ">")])
def test_a_huge_sparse_slide_opens_and_reads_in_bounded_memory(tmp_path, big, order):
    # 100,000 x 80,000 px in a 1.4 MB file: valid, every tile but two unwritten
    dark = np.full((256, 256, 3), 90, np.uint8)
    path = write_sparse_tiff(tmp_path / "sparse.tif", 100_000, 80_000, big=big, order=order, tiles={0: dark, 5: dark})
    for opener in (OpenSlideReader, TiffFileReader):
        reader, error = bounded(opener, path)
        assert error is None, repr(error)
        with reader:
            _, err = bounded(reader.read_region, 0, 0, 0, 100_000, 80_000)
            assert isinstance(err, SlideReadError) and "too large to read at once" in str(err)
            region = reader.read_region(0, 0, 0, 512, 256)
            assert (region[:, :256] == 90).all() and (region[:, 256:] == 255).all()
            tracemalloc.start()
            try:
                thumb, err = bounded(reader.get_thumbnail, (512, 512))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert err is None, repr(err)
            assert thumb.shape == (410, 512, 3)
            assert peak < 256 << 20, f"{opener.__name__}: the thumbnail allocated {peak / 2**20:.0f} MB"


def test_a_whole_level_thumbnail_is_read_block_by_block(tmp_path, monkeypatch):
    import core.slide.overview as overview

    path = tmp_path / "noise.tif"
    rgb = np.random.default_rng(3).integers(0, 255, (1500, 2000, 3), np.uint8)
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb")
    with open_slide(path) as reader:
        whole = reader.get_thumbnail((500, 500))
        sizes = []
        read = reader.read_region
        monkeypatch.setattr(reader, "read_region", lambda *a: sizes.append(a[3] * a[4]) or read(*a))
        monkeypatch.setattr(overview, "THUMBNAIL_ONE_READ_PIXELS", 100_000)
        monkeypatch.setattr(overview, "THUMBNAIL_BLOCK", 300)
        blocks = reader.get_thumbnail((500, 500))
        assert len(sizes) > 20 and max(sizes) <= 320 * 320
        assert blocks.shape == whole.shape and np.abs(blocks.astype(int) - whole).mean() < 4
        sizes.clear()
        monkeypatch.setattr(overview, "THUMBNAIL_BUDGET_PIXELS", 1_000_000)
        monkeypatch.setattr(overview, "THUMBNAIL_SAMPLE_PIXELS", 200_000)
        sampled = reader.get_thumbnail((500, 500))
        assert sampled.shape == whole.shape and sum(sizes) <= 200_000 + 16 * 500


def test_a_region_larger_than_the_budget_is_refused_with_advice(tmp_path):
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((64, 64, 3), np.uint8), tile=(32, 32), photometric="rgb")
    with open_slide(tmp_path / "small.tif") as reader:
        with pytest.raises(SlideReadError, match="too large to read at once.*read it in tiles"):
            reader.read_region(0, 0, 0, 8192, MAX_REGION_PIXELS // 8192 + 1)


def _dicom_copy(shared: Path, folder: Path, **fields) -> Path:
    """The shared DICOM boxes (both files) in ``folder``, with fields of boxes_0.dcm changed."""
    tags = {"total_columns": (0x48, 6, "<I"), "total_rows": (0x48, 7, "<I"), "rows": (0x28, 0x10, "<H"),
            "columns": (0x28, 0x11, "<H")}
    folder.mkdir()
    shutil.copy(shared / "boxes_1.dcm", folder / "boxes_1.dcm")
    data = bytearray((shared / "boxes_0.dcm").read_bytes())
    for name, value in fields.items():
        group, element, code = tags[name]
        at = data.find(struct.pack("<HH", group, element))
        assert at > 128
        struct.pack_into(code, data, at + 8, value)
    (folder / "boxes_0.dcm").write_bytes(bytes(data))
    return folder / "boxes_0.dcm"


def test_a_dicom_claiming_two_billion_columns_is_refused(tmp_path, shared):
    path = _dicom_copy(shared, tmp_path / "huge", total_columns=2**31)  # was an uncaught MemoryError
    err = refusal(open_slide, path)
    assert "2,147,483,648 x 16 px" in str(err) and "frames" in str(err)


def test_a_dicom_with_empty_frames_is_refused(tmp_path, shared):
    assert "empty" in str(refusal(open_slide, _dicom_copy(shared, tmp_path / "zero", rows=0)))


def test_the_shared_dicom_still_opens(tmp_path, shared):
    with open_slide(_dicom_copy(shared, tmp_path / "plain")) as reader:
        assert reader.vendor == "dicom" and reader.get_thumbnail((64, 64)).ndim == 3


# -- tiny files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("content,name", [(b"II", "two.svs"), (b"II*", "three.tif"), (b"MM\0", "three.tiff"),
                                          (b"\x89P", "two.png"), (b"BM", "two.bmp"), (b"\xff\xd8\xff", "a.jpg")])
def test_a_file_of_two_or_three_bytes_is_a_clear_error(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    assert f"only {len(content)} bytes long" in str(refusal(open_slide, path))  # was struct.error


def test_info_on_a_two_byte_file_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "two.svs").write_bytes(b"II")
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "info", str(tmp_path / "two.svs")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"biopsia: error: {tmp_path / 'two.svs'}: the file is only 2 bytes long, too short to hold a slide "
        "(the file may be damaged or incompletely copied: copy it again or re-export it from the scanner)"]


# -- a few damaged tiles -------------------------------------------------------------------------
#: Level-0 tiles of the CMU slide (240 px, 10 columns) whose first bytes are overwritten.
DAMAGED_TILES = (14, 57, 101)


@pytest.fixture(scope="module")
def damaged_cmu(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("damaged") / "damaged.svs"
    shutil.copy(CMU, path)
    with tifffile.TiffFile(path) as tif:
        offsets = tif.pages[0].dataoffsets
    with open(path, "r+b") as fh:
        for index in DAMAGED_TILES:
            fh.seek(offsets[index])
            fh.write(b"\0" * 16)  # no JPEG start marker: the tile cannot be decoded
    return path


def _regions(reader) -> list[tuple[int, int, int, int]]:
    l0_w, l0_h = reader.dimensions
    return [(i * l0_w // 5, j * l0_h // 5, l0_w // 5, l0_h // 5) for j in range(5) for i in range(5)]


def _meets_damage(x, y, w, h) -> bool:
    return any(x < (t % 10 + 1) * 240 and t % 10 * 240 < x + w and y < (t // 10 + 1) * 240 and t // 10 * 240 < y + h
               for t in DAMAGED_TILES)


def _read(reader, region):
    x, y, w, h = region
    try:
        return reader.read_region(x, y, 0, w, h)
    except SlideReadError as err:
        return err


@pytest.mark.parametrize("threads", [1, 2])
def test_only_the_damaged_regions_of_an_svs_fail(damaged_cmu, threads):
    # OpenSlide latches its first error: all 25 regions failed where 5 meet the 3 damaged tiles.
    with OpenSlideReader(CMU) as pristine, OpenSlideReader(damaged_cmu) as reader:
        regions = _regions(reader) * threads  # with threads, each region twice, at once
        with ThreadPoolExecutor(threads) as pool:
            got = list(pool.map(lambda r: _read(reader, r), regions))
        for region, result in zip(regions, got):
            if _meets_damage(*region):
                assert isinstance(result, SlideReadError), region
                assert damaged_cmu.name in str(result) and "could not decode the region at level 0" in str(result)
            else:
                assert isinstance(result, np.ndarray), f"{region}: {result}"
                np.testing.assert_array_equal(result, _read(pristine, region))
        assert sum(_meets_damage(*r) for r in _regions(reader)) == 5


def test_the_overview_of_a_damaged_svs_is_grey_only_where_damaged(damaged_cmu):
    with OpenSlideReader(CMU) as pristine, OpenSlideReader(damaged_cmu) as reader:
        thumb, err = bounded(reader.get_thumbnail, (512, 512))
        assert err is None, repr(err)  # it used to fail whole, and the screenshot waited 61 s for it
        good = pristine.get_thumbnail((512, 512))
    grey = (thumb == DAMAGED_GREY).all(axis=2)
    assert 0.01 < grey.mean() < 0.15
    assert np.abs(thumb[~grey].astype(int) - good[~grey]).mean() < 3


def test_the_tifffile_reader_fails_only_damaged_regions_too(damaged_cmu):
    with TiffFileReader(damaged_cmu) as reader:
        results = [_read(reader, r) for r in _regions(reader)]
    assert [isinstance(r, SlideReadError) for r in results] == [_meets_damage(*r) for r in _regions(reader)]


# -- the time budget -----------------------------------------------------------------------------
def test_an_open_that_takes_too_long_gives_up_and_the_late_reader_is_closed(tmp_path, monkeypatch):
    release, closed = threading.Event(), threading.Event()

    class LateReader:
        def close(self):
            closed.set()

    def slow_open(path):
        release.wait(DEADLINE_S)
        return LateReader()

    monkeypatch.setattr(open_module, "_open_checked", slow_open)
    path = tmp_path / "slow.svs"
    path.write_bytes(b"\0" * 64)
    _, err = bounded(open_slide, path, 0.2)
    assert isinstance(err, SlideError) and "took longer than 0.2 s to open" in str(err) and path.name in str(err)
    release.set()
    assert closed.wait(DEADLINE_S)


# -- the window and the command line -------------------------------------------------------------
@pytest.fixture
def looped_tiff(tmp_path) -> Path:
    path = many_pages(tmp_path / "looped.tif", 120)
    offsets = ifd_offsets(path.read_bytes(), 200)
    return edited(path, path, lambda data: set_next(data, offsets[-1], offsets[0]))


def test_the_window_reports_a_looped_tiff_and_a_three_byte_file(window, qtbot, looped_tiff):
    tiny = looped_tiff.with_name("tiny.svs")
    tiny.write_bytes(b"II*")  # the window said "unexpected error: error('unpack_from requires a buffer...')"
    for slide, reason in ((looped_tiff, "loop"), (tiny, "only 3 bytes long")):
        with qtbot.waitSignal(window.open_failed, timeout=int(DEADLINE_S * 1000)) as blocker:
            window.open_slide(slide)
        path, message = blocker.args
        assert path == str(slide) and reason in message and "unexpected" not in message


def test_screenshot_of_a_looped_tiff_exits_with_the_reason(tmp_path, looped_tiff):
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "screenshot", str(looped_tiff),
                           "--out", str(tmp_path / "shot.png")],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 1 and "loop" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "shot.png").exists()


def test_info_does_not_let_a_file_drive_the_terminal(tmp_path):
    from core.slide.describe import describe

    path = tmp_path / "escape.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), tile=(32, 32), photometric="rgb",
                     description="scan\x1b]0;owned\x07 done\x1b[2J" + "x" * 10_000)
    with open_slide(path) as reader:
        text = describe(reader.info())
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;owned\\x07 done" in text
    assert "more characters]" in text and len(text) < 5000


def test_screenshot_of_a_damaged_svs_says_how_many_tiles_are_hatched(tmp_path, damaged_cmu):
    out = tmp_path / "shot.png"
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "screenshot", str(damaged_cmu), "--out", str(out),
                           "--size", "800x600"], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "Traceback" not in done.stderr
    assert "drawn hatched" in done.stderr and str(damaged_cmu) in done.stderr


def test_only_the_damaged_blocks_of_a_display_tile_are_lost(damaged_cmu):
    with open_slide(CMU) as pristine, open_slide(damaged_cmu) as reader:
        for tile in DAMAGED_TILES:
            x, y = (tile % 10) * 240 - 100, (tile // 10) * 240 - 100  # a 512 px region around the damaged tile
            x, y = max(0, x), max(0, y)
            with pytest.raises(SlideReadError):
                reader.read_region(x, y, 0, 512, 512)
            rgb, damaged, error = read_salvaged(reader, x, y, 0, 512, 512)
            assert isinstance(error, SlideReadError) and str(damaged_cmu) in str(error)
            assert damaged is not None and damaged.any()
            # At most the blocks the 240 px tile touches are lost: 3 x 3 blocks of 128 px, far from all 16.
            assert damaged.sum() <= 9 * SALVAGE_BLOCK ** 2 < damaged.size
            expected = pristine.read_region(x, y, 0, 512, 512)
            assert np.array_equal(rgb[~damaged], expected[~damaged])
        whole, none, no_error = read_salvaged(reader, 0, 0, 0, 200, 200)  # away from the damage: one plain read
        assert none is None and no_error is None and np.array_equal(whole, pristine.read_region(0, 0, 0, 200, 200))
