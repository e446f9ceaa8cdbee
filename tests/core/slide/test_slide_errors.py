"""Opening and reading bad slide files: always a SlideError naming the file, never a crash, hang or stderr noise."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from core.errors import SlideError, SlideNotFoundError, SlideReadError, UnsupportedSlideError
from core.slide import open_slide, supported_extensions
from core.slide.open import backend_order
from core.slide.openslide_reader import OpenSlideReader
from core.slide.tifffile_reader import TiffFileReader
from deadline import within_deadline

TESTS = Path(__file__).resolve().parents[2]
CMU = TESTS / "data" / "CMU-1-Small-Region.svs"
SHARED_SLIDES = Path(__file__).resolve().parents[4] / "shared" / "data" / "slides"


def open_error(path: Path) -> SlideError:
    """The SlideError that opening ``path`` must raise (within the deadline)."""
    reader, error = within_deadline(open_slide, path)
    if reader is not None:
        reader.close()
    assert isinstance(error, SlideError), f"expected a SlideError, got {error!r}"
    assert path.name in str(error)
    return error


@pytest.fixture
def shared():
    if not SHARED_SLIDES.is_dir():
        pytest.skip(f"shared vendor slides not found at {SHARED_SLIDES}")
    return SHARED_SLIDES


def write_tiled(path: Path, size=(1024, 1024), compression="zlib") -> Path:
    """A single-level tiled TIFF of noise (its directory comes before the tile data)."""
    rgb = np.random.default_rng(1).integers(0, 255, (*size, 3), dtype=np.uint8)
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression=compression)
    return path


def truncated_copy(source: Path, folder: Path, fraction: float) -> Path:
    data = source.read_bytes()
    out = folder / f"{source.stem}-cut{round(fraction * 100)}{source.suffix}"
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def read_everything(reader) -> list[SlideReadError]:
    """Read every level in 512-pixel regions and every associated image; collect SlideReadErrors."""
    errors = []
    for level, (lv_w, lv_h) in enumerate(reader.level_dimensions):
        ds = reader.level_downsamples[level]
        for lv_y in range(0, lv_h, 512):
            for lv_x in range(0, lv_w, 512):
                try:
                    reader.read_region(int(lv_x * ds), int(lv_y * ds), level, 512, 512)
                except SlideReadError as err:
                    errors.append(err)
    for name in reader.associated_image_names:
        try:
            reader.associated_image(name)
        except SlideReadError as err:
            errors.append(err)
    return errors


def test_missing_file(tmp_path):
    err = open_error(tmp_path / "nowhere.svs")
    assert isinstance(err, SlideNotFoundError) and isinstance(err, FileNotFoundError)


def test_a_folder_is_not_a_slide(tmp_path):
    folder = tmp_path / "slide.mrxs.d"
    folder.mkdir()
    err = open_error(folder)
    assert not isinstance(err, UnsupportedSlideError) and "folder" in str(err)


def test_empty_file(tmp_path):
    (tmp_path / "empty.svs").touch()
    assert "empty" in str(open_error(tmp_path / "empty.svs"))


def test_text_file_renamed_svs_lists_what_was_tried(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("Patient notes, not a slide.\n" * 50)
    err = open_error(path)
    assert isinstance(err, UnsupportedSlideError)
    assert [name for name, _ in err.tried] == ["openslide", "tifffile", "image"]
    assert all(reason for _, reason in err.tried) and "openslide:" in str(err)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_permission_denied(tmp_path):
    path = shutil.copy(CMU, tmp_path / "locked.svs")
    os.chmod(path, 0)
    try:
        err = open_error(Path(path))
    finally:
        os.chmod(path, 0o644)
    assert "permission" in str(err).lower()


def test_permission_denied_as_reported_by_the_system(tmp_path, monkeypatch):
    import core.slide.open as open_module

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(open_module, "open", refuse, raising=False)  # the module's own open() only
    err = open_error(Path(shutil.copy(CMU, tmp_path / "locked.svs")))
    assert "permission denied" in str(err) and not isinstance(err, UnsupportedSlideError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.svs")
    assert "regular file" in str(open_error(tmp_path / "pipe.svs"))


def test_unopenable_tiff_lists_each_backend(shared):
    err = open_error(shared / "unopenable.tiff")
    assert isinstance(err, UnsupportedSlideError)
    reasons = dict(err.tried)
    assert set(reasons) == {"openslide", "tifffile", "image"}
    assert "52479" in reasons["openslide"]  # the unsupported compression, as OpenSlide names it


def test_unreadable_svs_raises_a_read_error_naming_the_file(shared):
    path = shared / "unreadable.svs"
    reader, error = within_deadline(open_slide, path)
    if error is not None:  # refusing it at open time is fine too, as long as it is a SlideError
        assert isinstance(error, SlideError) and path.name in str(error)
        return
    with reader:
        reasons = []
        for attempt in range(2):  # OpenSlide's error is sticky: the second read runs on a fresh handle
            _, err = within_deadline(reader.read_region, 0, 0, 0, 16, 16)
            assert isinstance(err, SlideReadError), repr(err)
            assert path.name in str(err) and "could not decode the region at level 0" in str(err)
            reasons.append(str(err))
        assert reasons[0] == reasons[1]  # the same real cause both times, not "an earlier read failed"


@pytest.mark.parametrize("fraction", [0.5, 0.6, 0.9])
def test_truncated_svs(tmp_path, fraction):
    path = truncated_copy(CMU, tmp_path, fraction)
    reader, error = within_deadline(open_slide, path)
    if error is not None:
        assert isinstance(error, SlideError) and path.name in str(error), repr(error)
        assert "truncated" in str(error)  # its directory lies past the cut
        return
    with reader:  # the CMU pixels come first in the file: what remains must read or fail clearly
        errors, crash = within_deadline(read_everything, reader)
        assert crash is None, repr(crash)
        assert all(path.name in str(err) for err in errors)


def test_truncated_tile_data_fails_on_read_not_open(tmp_path):
    path = truncated_copy(write_tiled(tmp_path / "tiled.tif"), tmp_path, 0.6)
    reader, error = within_deadline(open_slide, path)
    assert error is None, repr(error)
    with reader:
        errors, crash = within_deadline(read_everything, reader)
        assert crash is None, repr(crash)
        assert errors and all(path.name in str(err) and "truncated" in str(err) for err in errors)
        assert reader.read_region(0, 0, 0, 256, 256).std() > 10  # the tiles before the cut still read


@pytest.mark.parametrize("reader_class", [OpenSlideReader, TiffFileReader])
def test_a_corrupt_tile_raises_read_error_with_the_region(tmp_path, reader_class):
    path = write_tiled(tmp_path / "corrupt.tif")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[5], tif.pages[0].databytecounts[5]
    with open(path, "r+b") as fh:  # tile 5 is row 1, column 1
        fh.seek(offset)
        fh.write(b"\xde\xad\xbe\xef" * (count // 4))
    with reader_class(path) as reader:
        reader.read_region(0, 0, 0, 256, 256)
        _, err = within_deadline(reader.read_region, 300, 300, 0, 100, 100)
        assert isinstance(err, SlideReadError), repr(err)
        assert path.name in str(err) and "level 0 (300, 300, 100 x 100)" in str(err)


def test_truncated_and_corrupt_plain_images(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    for ext in (".png", ".jpg"):
        ok, data = cv2.imencode(ext, rgb)
        path = tmp_path / f"cut{ext}"
        path.write_bytes(data.tobytes()[: len(data) // 2])
        err = open_error(path)
        assert "damaged" in str(err) or "truncated" in str(err)


def test_an_image_too_large_for_memory_is_refused_before_decoding(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)  # claims 3.6 gigapixels of RGB
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    err = open_error(path)
    assert not isinstance(err, UnsupportedSlideError) and "60000 x 60000" in str(err) and "too large" in str(err)


def test_bad_files_print_nothing(tmp_path, capfd, shared):
    (tmp_path / "notes.svs").write_text("not a slide")
    ok, png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(png.tobytes()[:40])
    paths = [tmp_path / "notes.svs", tmp_path / "cut.png", shared / "unopenable.tiff",
             truncated_copy(CMU, tmp_path, 0.5)]
    for path in paths:
        open_error(path)
    with open_slide(shared / "unreadable.svs") as reader:
        with pytest.raises(SlideReadError):
            reader.read_region(0, 0, 0, 8, 8)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_backend_order_follows_the_extension(tmp_path):
    tifffile.imwrite(tmp_path / "plain-name.tif", np.zeros((32, 32, 3), np.uint8), ome=True)
    assert backend_order(Path("a.svs"))[0] == "openslide"
    assert backend_order(Path("a.ome.tiff"))[0] == "tifffile"
    assert backend_order(Path("a.JPG"))[0] == "image"
    assert backend_order(tmp_path / "plain-name.tif")[0] == "tifffile"  # OME content, whatever the name
    tifffile.imwrite(tmp_path / "deep.tif", np.zeros((512, 512), np.uint16), tile=(256, 256))
    assert backend_order(tmp_path / "deep.tif")[0] == "tifffile"  # OpenSlide would keep only the high byte
    # generic tiled pyramids: same pixels either way, tifffile decodes them faster
    assert backend_order(write_tiled(tmp_path / "tiled.tif"))[0] == "tifffile"
    with open_slide(tmp_path / "plain-name.tif") as reader:
        assert reader.backend == "tifffile" and reader.vendor == "ome-tiff"


def test_supported_extensions():
    extensions = supported_extensions()
    for ext in ("svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide", "bif", "dcm",
                "ome.tif", "ome.tiff", "png", "jpg", "jpeg", "bmp"):
        assert ext in extensions
    assert len(extensions) == len(set(extensions)) and all(not e.startswith(".") for e in extensions)
