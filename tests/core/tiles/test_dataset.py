"""core.tiles.dataset and core.tiles.recordio: labelled tiles from synthetic slides, splits, RecordIO files MXNet reads."""

import errno
import json
import os
import struct

import cv2
import numpy as np
import pytest
from shapely.geometry import Point, box
from shapely.ops import unary_union

import core.tiles.recordio
from core.annotations.formats import read_annotations, write_annotations
from core.annotations.model import BENIGN, TUMOUR, Annotation
from core.annotations.store import AnnotationStore
from core.errors import DatasetError
from core.models.engine import engine
from core.project.model import Project
from core.project.slide_settings import SlideSettingsStore
from core.tiles.arrays import TileArrays, split_off
from core.tiles.dataset import (CLASSES, load_tiles, plan_dataset, read_dataset, read_manifest, sources_from_paths,
                                sources_from_project, write_dataset)
from core.tiles.grid import TileSpec
from core.tiles.recordio import MAGIC, RecordIOError, RecordReader, RecordWriter, pack_image_record, unpack_image_record
from core.tiles.splits import stratified_pick
from tests.cli.test_cli import biopsia

SPEC = TileSpec(64, 2.0)


@pytest.fixture(scope="module")
def pair_plan(slide_pair):
    return plan_dataset(sources_from_paths([s.slide_path for s in slide_pair]), SPEC, test_slides=["pair29"])


@pytest.fixture(scope="module")
def written(pair_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    return out, write_dataset(pair_plan, out, encoding="png")


# -- RecordIO ----------------------------------------------------------------------------------------
PAYLOADS = [b"abc", b"x" * 4 + struct.pack("<I", MAGIC) + b"yyyy" + struct.pack("<I", MAGIC) + b"z",
            struct.pack("<I", MAGIC) + b"12", b"q" * 8 + struct.pack("<I", MAGIC), b"1" * 7, b""]


def test_recordio_bytes_match_mxnet(tmp_path):
    import mxnet as mx  # here, not at the top: collecting this file must not load MXNet (tests fork after it)

    with RecordWriter(tmp_path / "ours.rec", tmp_path / "ours.idx") as writer:
        for i, payload in enumerate(PAYLOADS):
            writer.write(i, pack_image_record(i % 2, i, payload))
    theirs = mx.recordio.MXIndexedRecordIO(str(tmp_path / "theirs.idx"), str(tmp_path / "theirs.rec"), "w")
    for i, payload in enumerate(PAYLOADS):
        theirs.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, i % 2, i, 0), payload))
    theirs.close()
    assert (tmp_path / "ours.rec").read_bytes() == (tmp_path / "theirs.rec").read_bytes()
    assert (tmp_path / "ours.idx").read_text() == (tmp_path / "theirs.idx").read_text()
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "ours.idx"), str(tmp_path / "ours.rec"), "r")
    ours = RecordReader(tmp_path / "theirs.rec")
    for i, payload in enumerate(PAYLOADS):
        header, body = mx.recordio.unpack(reader.read_idx(i))
        assert (body, header.label, header.id) == (payload, i % 2, i)
        assert unpack_image_record(ours.read(i)) == (float(i % 2), i, payload)


def test_damaged_recordio_is_reported(tmp_path):
    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write(0, pack_image_record(0, 0, b"a" * 100))
        writer.write(1, pack_image_record(1, 1, b"b" * 100))
    data = (tmp_path / "a.rec").read_bytes()
    (tmp_path / "a.rec").write_bytes(data[:-40])
    reader = RecordReader(tmp_path / "a.rec")
    assert unpack_image_record(reader.read(0))[2] == b"a" * 100
    with pytest.raises(RecordIOError, match="record 1 is cut off"):
        reader.read(1)
    (tmp_path / "a.idx").write_text("0\t0\nnot a line\n")
    with pytest.raises(RecordIOError, match=r"a\.idx, line 2"):
        RecordReader(tmp_path / "a.rec")


# -- sources and plans ----------------------------------------------------------------------------
def test_slides_with_marks_beside_them(slide_pair):
    sources = sources_from_paths([s.slide_path for s in slide_pair])
    assert [s.name for s in sources] == ["pair29", "pair30"]
    assert all(s.fully_annotated and s.annotations for s in sources)
    assert sum(a.class_name == "Tumour" for a in sources[0].annotations) == len(slide_pair[0].tumour_polygons)


def test_a_slide_without_marks_is_refused(slide_pair, tmp_path):
    bare = tmp_path / "bare.tiff"
    bare.write_bytes(slide_pair[0].slide_path.read_bytes())
    with pytest.raises(DatasetError, match=r"bare\.tiff: no marks found.*--fully-annotated"):
        sources_from_paths([bare])
    [source] = sources_from_paths([bare], fully_annotated=True)  # a benign slide, said so explicitly
    assert source.annotations == [] and source.fully_annotated


def test_malformed_marks_name_their_file(slide_pair, tmp_path):
    slide = tmp_path / "s.tiff"
    slide.write_bytes(slide_pair[0].slide_path.read_bytes())
    (tmp_path / "s.geojson").write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(DatasetError, match=r"s\.geojson"):
        sources_from_paths([slide])


def test_missing_paths_and_plain_folders(tmp_path):
    with pytest.raises(DatasetError, match="no such slide file or project folder"):
        sources_from_paths([tmp_path / "nope.svs"])
    with pytest.raises(DatasetError, match="not a Biopsia project"):
        sources_from_paths([tmp_path])


def test_by_slide_split_keeps_slides_apart(pair_plan, slide_pair):
    assert pair_plan.slide_splits() == {"pair29": "test", "pair30": "train"}
    counts = pair_plan.counts()
    assert all(n > 0 for split in counts.values() for n in split.values())
    # labels agree with the known tumour: a tumour tile's centre lies in a tumour polygon

    tumour = unary_union(slide_pair[0].tumour_polygons)
    plan0 = pair_plan.plans[0]
    mine = np.flatnonzero(pair_plan.slide == 0)
    half = plan0.tile_l0 / 2
    centres = [Point(plan0.l0_x[i] + half, plan0.l0_y[i] + half) for i in pair_plan.index[mine]]
    inside = np.array([tumour.contains(c) for c in centres])
    assert np.mean(inside == (pair_plan.label[mine] == 1)) > 0.95


def test_by_slide_ratio_assigns_whole_slides(slide_pair):
    sources = sources_from_paths([s.slide_path for s in slide_pair])
    plan = plan_dataset(sources, SPEC, split="by-slide", ratio=0.5, seed=3)
    assert sorted(plan.slide_splits().values()) == ["test", "train"]
    everything = plan_dataset(sources, SPEC, ratio=1.0)
    assert set(everything.slide_splits().values()) == {"train"}
    with pytest.raises(DatasetError, match="not among the slides"):
        plan_dataset(sources, SPEC, test_slides=["other"])


def test_random_split_is_stratified_and_seeded(slide_pair):
    sources = sources_from_paths([s.slide_path for s in slide_pair])
    a = plan_dataset(sources, SPEC, split="random", ratio=0.3, seed=1)
    b = plan_dataset(sources, SPEC, split="random", ratio=0.3, seed=1)
    c = plan_dataset(sources, SPEC, split="random", ratio=0.3, seed=2)
    assert np.array_equal(a.split, b.split) and not np.array_equal(a.split, c.split)
    for cls in CLASSES:
        n_train, n_test = a.counts()["train"][cls], a.counts()["test"][cls]
        assert abs(n_train - 0.3 * (n_train + n_test)) <= 1
    assert set(a.slide_splits().values()) == {"both"}


def test_split_off_holds_out_a_stratified_seeded_share():
    labels = np.repeat([0, 1, 2], [50, 7, 1])
    tiles = TileArrays(np.arange(labels.size, dtype=np.uint8)[:, None, None, None].repeat(3, -1), labels,
                       ["a", "b", "c"])
    train, val = split_off(tiles, 0.2, seed=3)
    again, _ = split_off(tiles, 0.2, seed=3)
    other, _ = split_off(tiles, 0.2, seed=4)
    assert np.bincount(val.labels, minlength=3).tolist() == [10, 1, 1]  # round(0.2 n), at least one a class
    assert sorted(np.concatenate([train.images, val.images])[:, 0, 0, 0].tolist()) == list(range(labels.size))
    assert np.array_equal(train.images, again.images) and not np.array_equal(train.images, other.images)
    assert train.classes == val.classes == ["a", "b", "c"]
    # a random dataset split draws the same way: the training share of each class
    picked = stratified_pick(labels, 0.2, np.random.default_rng(3), at_least=1)
    assert np.array_equal(np.sort(tiles.images[picked][:, 0, 0, 0]), np.sort(val.images[:, 0, 0, 0]))


def test_no_labelled_tiles_says_why(slide_pair):
    [source] = sources_from_paths([slide_pair[0].slide_path], fully_annotated=False)
    source.annotations = [a for a in source.annotations if a.class_name != "Tumour"]
    with pytest.raises(DatasetError, match=r"no labelled tiles on pair29 .*'unlabelled': \d+.*fully annotated"):
        plan_dataset([source], SPEC)


def test_project_slides_use_their_settings(slide_pair, tmp_path):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide_pair[0].slide_path)
    found = read_annotations(slide_pair[0].geojson_path)
    project.save_annotations(entry.id, AnnotationStore(found.annotations, project.classes))
    [source] = sources_from_project(project)
    assert not source.fully_annotated and len(source.annotations) == len(found.annotations)
    partly = plan_dataset([source], SPEC)
    assert partly.counts()["train"]["Non-tumour"] == 0 and partly.counts()["train"]["Tumour"] > 0
    project.update_settings(entry.id, fully_annotated=True)
    [source] = sources_from_paths([project.folder])
    assert plan_dataset([source], SPEC).counts()["train"]["Non-tumour"] > 0


# -- streaming and files ----------------------------------------------------------------------------
def test_streamed_tiles_equal_written_tiles(pair_plan, written):
    out, manifest = written
    streamed = load_tiles(pair_plan, "test")
    stored = read_dataset(out, "test")
    assert stored.classes == CLASSES
    assert np.array_equal(streamed.labels, stored.labels)
    assert np.array_equal(streamed.images, stored.images)  # PNG is lossless
    assert streamed.images.shape[1:] == (64, 64, 3)


def test_manifest_lists_and_csv_agree(written, pair_plan):
    out, manifest = written
    assert read_manifest(out) == json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == pair_plan.counts()
    assert manifest["tile_px"] == 64 and manifest["mpp"] == 2.0
    lines = (out / "train.lst").read_text().splitlines()
    assert len(lines) == sum(manifest["counts"]["train"].values())
    index, label, path = lines[0].split("\t")
    assert index == "0" and label in ("0", "1") and path.startswith("pair30/") and path.endswith(".png")
    rows = (out / "tiles.csv").read_text().splitlines()
    assert rows[0].startswith("split,record,slide,x,y,size_l0,tile_px,mpp,label,class")
    assert len(rows) - 1 == pair_plan.label.size
    tumour_rows = [r for r in rows[1:] if r.split(",")[9] == "Tumour"]
    assert len(tumour_rows) == sum(c["Tumour"] for c in manifest["counts"].values())
    assert not [p for p in out.iterdir() if p.name.startswith(".writing-")]


def test_mxnet_reads_the_records(written):
    import mxnet as mx  # here, not at the top: collecting this file must not load MXNet (tests fork after it)


    out, manifest = written
    n_test = sum(manifest["counts"]["test"].values())
    reader = mx.recordio.MXIndexedRecordIO(str(out / "test.idx"), str(out / "test.rec"), "r")
    header, image = mx.recordio.unpack_img(reader.read_idx(n_test - 1))
    assert image.shape == (64, 64, 3) and header.label in (0.0, 1.0)

    def iterate():
        it = mx.io.ImageRecordIter(path_imgrec=str(out / "test.rec"), path_imgidx=str(out / "test.idx"),
                                   data_shape=(3, 64, 64), batch_size=16, round_batch=False)
        labels = []
        for batch in it:
            assert batch.data[0].shape[1:] == (3, 64, 64)
            labels.extend(batch.label[0].asnumpy()[:16 - batch.pad].tolist())
        return labels
    labels = engine().run(iterate)  # the last batch is filled up to 16 from the start
    assert n_test <= len(labels) < n_test + 16
    assert labels[:n_test] == read_dataset(out, "test").labels.astype(float).tolist()


def test_patch_folders_and_rec_files(written, tmp_path):
    out, _ = written
    tiles = read_dataset(out / "train.rec")
    for cls in CLASSES:
        (tmp_path / "patches" / cls).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(tiles.images[:30], tiles.labels[:30])):
        cv2.imwrite(str(tmp_path / "patches" / CLASSES[label] / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    patches = read_dataset(tmp_path / "patches")
    assert patches.classes == CLASSES and len(patches) == 30
    assert sorted(patches.labels.tolist()) == sorted(tiles.labels[:30].tolist())


def test_damaged_datasets_are_reported(written, tmp_path):
    out, _ = written
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("manifest.json", "train.idx"):
        (broken / name).write_bytes((out / name).read_bytes())
    (broken / "train.rec").write_bytes((out / "train.rec").read_bytes()[:5000])
    with pytest.raises(DatasetError, match=r"train\.rec: record \d+ is cut off"):
        read_dataset(broken, "train")
    with pytest.raises(DatasetError, match=r"test\.rec: missing"):
        read_dataset(broken, "test")
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"manifest\.json: unreadable"):
        read_dataset(broken, "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="one subfolder per class"):
        read_dataset(empty)
    with pytest.raises(DatasetError, match="no such dataset"):
        read_dataset(tmp_path / "absent")


def test_cancelled_and_failed_writes_keep_the_earlier_dataset(pair_plan, written, tmp_path, monkeypatch):
    out, _ = written
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    assert write_dataset(pair_plan, out, should_stop=lambda: calls.append(1) or len(calls) > 2) is None
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


    def full_disk(self, key, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.rec_path))
    monkeypatch.setattr(core.tiles.recordio.RecordWriter, "write", full_disk)
    with pytest.raises(DatasetError, match="No space left on device; nothing in the folder was replaced"):
        write_dataset(pair_plan, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_real_full_filesystem(pair_plan, small_disk):
    mount = small_disk.mount("256k")
    with pytest.raises(DatasetError, match=f"{mount}: writing the dataset failed: No space left on device"):
        write_dataset(pair_plan, mount, encoding="png")
    assert list(mount.iterdir()) == []


def test_planning_stops_when_asked_and_uses_entered_mpp(slide_pair, tmp_path):
    sources = sources_from_paths([s.slide_path for s in slide_pair])
    assert plan_dataset(sources, SPEC, should_stop=lambda: True) is None
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide_pair[0].slide_path)
    project.update_settings(entry.id, fully_annotated=True)
    SlideSettingsStore().set_mpp_override(slide_pair[0].slide_path, 1.0)  # as Slide ▸ Set resolution does
    [source] = sources_from_project(project)
    assert source.mpp == (1.0, 1.0)
    plan = plan_dataset([source], SPEC)
    assert plan.plans[0].tile_l0 == 128  # 64 px at 2 µm/px is 128 px at the entered 1 µm/px


# -- marks that cannot label a slide ------------------------------------------------------------------
def _slide_with_marks(synth, folder, marks):
    """A copy of a synthetic slide with ``marks`` (Annotations, level-0 pixels) in a GeoJSON beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    slide = folder / "case.tiff"
    slide.write_bytes(synth.slide_path.read_bytes())
    write_annotations(folder / "case.geojson", marks, [TUMOUR, BENIGN])
    return slide


def _tumour(x0, y0, x1, y1):


    return Annotation(box(x0, y0, x1, y1), "Tumour")


@pytest.mark.parametrize("where", ["empty", "outside"])
def test_marks_that_label_nothing_are_refused_unless_the_slide_is_declared_benign(synthetic_slide, tmp_path, where):
    """An empty mark file, or marks wholly off the slide, would make every tile Non-tumour without a word."""
    marks = [] if where == "empty" else [_tumour(5000, 100, 6000, 900), _tumour(-900, -900, -10, -10)]
    slide = _slide_with_marks(synthetic_slide, tmp_path, marks)
    [assumed] = sources_from_paths([slide])  # marks beside it: taken as fully annotated, but only assumed
    assert assumed.fully_annotated and not assumed.declared
    expected = "its marks are empty" if where == "empty" else "none of its 2 marks is a Tumour region on the slide"
    with pytest.raises(DatasetError, match=rf"case\.tiff: {expected}, so every tile would be labelled Non-tumour"):
        plan_dataset([assumed], SPEC)
    [declared] = sources_from_paths([slide], fully_annotated=True)  # --fully-annotated: a benign slide
    plan = plan_dataset([declared], SPEC)
    assert plan.counts()["train"]["Tumour"] == 0 and plan.counts()["train"]["Non-tumour"] > 20
    outside = [w for w in plan.warnings if "lie entirely outside the slide (4096 x 3072 px)" in w]
    assert len(outside) == (where == "outside") and all(str(slide) in w for w in plan.warnings)


def test_marks_partly_off_the_slide_are_warned_about(synthetic_slide, tmp_path):
    marks = list(read_annotations(synthetic_slide.geojson_path).annotations)
    slide = _slide_with_marks(synthetic_slide, tmp_path, marks + [_tumour(3900, 2900, 4500, 3500)])
    plan = plan_dataset(sources_from_paths([slide]), SPEC)
    assert plan.counts()["train"]["Tumour"] > 0
    assert plan.warnings == [f"{slide}: 1 marks reach beyond the slide's edge (4096 x 3072 px); only their part on "
                             "the slide counts"]
    clean = plan_dataset(sources_from_paths([synthetic_slide.slide_path]), SPEC)
    assert clean.warnings == []


def test_project_slides_declared_fully_annotated_may_be_benign(synthetic_slide, tmp_path):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(synthetic_slide.slide_path)
    project.save_annotations(entry.id, AnnotationStore([], project.classes))
    [partly] = sources_from_paths([project.folder])  # the project default: not fully annotated, nothing assumed
    assert not partly.fully_annotated and not partly.declared
    with pytest.raises(DatasetError, match="no labelled tiles"):
        plan_dataset([partly], SPEC)
    project.update_settings(entry.id, fully_annotated=True)  # ticked in the project: declared benign
    [benign] = sources_from_paths([project.folder])
    assert benign.declared
    assert plan_dataset([benign], SPEC).counts()["train"]["Non-tumour"] > 20


def test_the_dataset_command_refuses_and_warns(synthetic_slide, tmp_path):
    slide = _slide_with_marks(synthetic_slide, tmp_path, [_tumour(-900, -900, -10, -10)])
    refused = biopsia("dataset", slide, "--out", tmp_path / "out", "--tile", 64, "--mpp", 2)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{slide}: none of its 1 marks is a Tumour region on the slide" in refused.stderr
    assert "--fully-annotated" in refused.stderr and not (tmp_path / "out").exists()
    benign = biopsia("dataset", slide, "--out", tmp_path / "out", "--tile", 64, "--mpp", 2, "--fully-annotated",
                     "--dry-run")
    assert benign.returncode == 0, benign.stderr
    assert f"biopsia: warning: {slide}: 1 of 1 marks lie entirely outside the slide" in benign.stderr
    assert "Non-tumour" in benign.stdout and not (tmp_path / "out").exists()
