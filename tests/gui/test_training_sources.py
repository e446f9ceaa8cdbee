"""Model ▸ Train… for real tissue: each slide's µm/px, masks as marks, patch folders with a scale.

Real widgets and real events (keys typed into the cells, buttons clicked); the values typed land where the
command line's ``--slide-mpp`` and ``annotations from-mask`` put theirs.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PyQt5.QtCore import Qt

from core.project.model import Project
from core.project.mpp import MppSource, resolve_mpp
from core.project.slide_settings import SlideSettingsStore
from gui.training_panel import MARKS, MPP
from projects import marked_project

WINDOW_SIZE = (1200, 800)
TIMEOUT = 60_000
SLIDE_W, SLIDE_H = 2048, 1536  # at 1 µm/px: a mask shrunk 16 times is 128 x 96
SHARED_PATCHES = Path(__file__).resolve().parents[3] / "shared" / "data" / "patches" / "lc25000-lung"


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from core.synth import write_synthetic_slide

    out = tmp_path_factory.mktemp("source-slides")
    return [write_synthetic_slide(out / f"s{seed}.tiff", seed=seed, width=SLIDE_W, height=SLIDE_H, mpp=1.0)
            for seed in (3, 8)]


@pytest.fixture
def panel(qtbot, window, slides, tmp_path):
    """The training panel of ``window`` on a project of the two slides, without marks."""
    project, ids = marked_project(tmp_path / "project", [s for s in slides], "Sources", marks=False)
    window.use_project(project, open_slides=False)
    window.actions["train"].trigger()
    panel = window.training_panel
    qtbot.waitExposed(panel)
    panel.ids = ids
    return panel


def type_into(qtbot, widget, text: str) -> None:
    """Select all in ``widget``, type ``text`` and press Enter, as a user does."""
    widget.setFocus()
    qtbot.keyClick(widget, Qt.Key_A, Qt.ControlModifier)
    qtbot.keyClick(widget, Qt.Key_Backspace)
    qtbot.keyClicks(widget, text)
    qtbot.keyClick(widget, Qt.Key_Return)


# -- each slide's µm/px ----------------------------------------------------------------------------
def test_the_table_shows_each_slides_file_resolution_and_a_typed_one_is_kept_where_the_cli_looks(
        qtbot, window, panel):
    edit = panel.mpp_edit(panel.ids[0])
    assert panel.table.cellWidget(0, MPP) is edit
    qtbot.waitUntil(lambda: edit.text() == "1", timeout=TIMEOUT)  # the file's 1 µm/px, read off the GUI thread
    assert edit.current.source == MppSource.FILE and "recorded in the slide file" in edit.toolTip()

    type_into(qtbot, edit, "0.5")

    project = Project.open(panel.project.folder)
    entry = project.slide(panel.ids[0])
    assert entry.settings.mpp_override == (0.5, 0.5)  # the project's setting, as `--slide-mpp` on a project
    assert SlideSettingsStore(window.slide_settings.path).get_mpp_override(entry.path) == (0.5, 0.5)
    assert resolve_mpp(entry.path, (1.0, 1.0), entry, window.slide_settings).mpp == (0.5, 0.5)
    assert edit.text() == "0.5" and edit.current.source == MppSource.PROJECT
    assert not panel.running  # Enter finished the cell; it did not press Start training
    assert not panel.error_label.isVisible()
    other = panel.mpp_edit(panel.ids[1])
    assert other.text() == "1" and project.slide(panel.ids[1]).settings.mpp_override is None


@pytest.mark.parametrize("typed, said", [("-0.5", "must be above 0"), ("0", "must be above 0"),
                                         ("5000", "outside 0.05 to 50 µm/px"), ("nan", "must be above 0"),
                                         ("half", "is not a number"), ("0.5, 0.5, 1", "two as X, Y")])
def test_a_resolution_that_is_not_one_is_refused_and_nothing_is_lost(qtbot, window, panel, typed, said):
    edit = panel.mpp_edit(panel.ids[0])
    type_into(qtbot, edit, "0.25")
    assert edit.text() == "0.25"

    type_into(qtbot, edit, typed)

    assert panel.error_label.isVisible() and said in panel.error, panel.error
    assert "s3.tiff" in panel.error and panel.error not in window.errors  # the banner says it, once
    assert edit.text() == "0.25"  # the value it had, shown again
    assert Project.open(panel.project.folder).slide(panel.ids[0]).settings.mpp_override == (0.25, 0.25)


def test_a_resolution_typed_for_an_open_slide_reaches_its_view(qtbot, window, panel, open_view):
    view = open_view(window, panel.project.slide(panel.ids[1]).path)
    type_into(qtbot, panel.mpp_edit(panel.ids[1]), "0.8, 0.9")
    assert view.mpp == (0.8, 0.9)
    assert Project.open(panel.project.folder).slide(panel.ids[1]).settings.mpp_override == (0.8, 0.9)


# -- masks as marks --------------------------------------------------------------------------------
def label_mask(path: Path, size=(SLIDE_W // 16, SLIDE_H // 16)) -> Path:
    """A 16-times-shrunk label mask: value 1 in a 40 x 30 block, value 2 in a 50 x 30 block, 0 elsewhere."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[10:40, 20:60] = 1
    mask[50:80, 70:120] = 2
    cv2.imwrite(str(path), mask)
    return path


def open_mask_dialog(qtbot, panel, slide: int = 0):
    with qtbot.waitSignal(panel.table.cellWidget(slide, MARKS + 1).clicked, timeout=TIMEOUT):
        qtbot.mouseClick(panel.table.cellWidget(slide, MARKS + 1), Qt.LeftButton)
    dialog = panel.mask_dialog
    qtbot.waitExposed(dialog)
    return dialog


def choose_mask(qtbot, dialog, path: Path) -> None:
    with qtbot.waitSignal(dialog.summary_read, timeout=TIMEOUT):
        type_into(qtbot, dialog.path_edit, str(path))


def test_a_label_mask_becomes_marks_one_class_per_value(qtbot, panel, tmp_path):
    from PyQt5.QtWidgets import QLabel

    def smallest(dialog) -> str:
        return next(label.text() for label in dialog.findChildren(QLabel) if "are dropped" in label.text())

    dialog = open_mask_dialog(qtbot, panel)
    assert "smaller than 400 slide px² are dropped" in smallest(dialog)  # a region of no stated µm/px: pixels
    dialog.close()
    type_into(qtbot, panel.mpp_edit(panel.ids[0]), "0.5")
    dialog = open_mask_dialog(qtbot, panel)
    assert "smaller than 100 µm² (400 slide px²) are dropped" in smallest(dialog)  # in µm², the pixels after
    choose_mask(qtbot, dialog, label_mask(tmp_path / "labels.png"))
    assert dialog.summary_label.text().startswith("128 x 96 px, 8-bit; values 0 (")
    type_into(qtbot, dialog.map_edit, "1=Tumour,2=Benign")

    with qtbot.waitSignal(dialog.imported, timeout=TIMEOUT) as imported:
        qtbot.mouseClick(dialog.import_button, Qt.LeftButton)

    assert imported.args == [2]
    marks = panel.project.load_annotations(panel.ids[0]).annotations()
    by_class = {m.class_name: m for m in marks}
    assert sorted(by_class) == ["Benign", "Tumour"]
    assert by_class["Tumour"].geometry.area == pytest.approx(40 * 16 * 30 * 16, rel=0.02)  # level-0 pixels
    assert by_class["Tumour"].geometry.bounds == pytest.approx((320, 160, 960, 640), abs=16)
    assert panel.table.item(0, MARKS).text() == "1 Benign, 1 Tumour"
    assert not dialog.isVisible()


def test_a_mask_imported_for_an_open_slide_is_one_undoable_edit(qtbot, window, panel, tmp_path, open_view):
    view = open_view(window, panel.project.slide(panel.ids[0]).path)
    dialog = open_mask_dialog(qtbot, panel)
    choose_mask(qtbot, dialog, label_mask(tmp_path / "labels.png"))
    assert dialog.map_edit.text() == "1=Tumour"  # not a one-value mask: the proposal stays
    with qtbot.waitSignal(dialog.imported, timeout=TIMEOUT):
        qtbot.mouseClick(dialog.import_button, Qt.LeftButton)
    assert [m.class_name for m in view.annotations.annotations()] == ["Tumour"]
    assert panel.table.item(0, MARKS).text() == "1 Tumour"
    view.undo_stack.undo()
    assert len(view.annotations) == 0


@pytest.mark.parametrize("case, said", [
    ("wrong size", "not the slide shrunk by a whole factor"),
    ("unknown value", "No marks to import"),
    ("bad map", "is not VALUE=CLASS"),
    ("missing file", "no such mask file"),
    ("bad downsample", "at downsample 8"),
])
def test_a_mask_that_does_not_fit_is_refused_in_the_dialog_and_nothing_is_lost(qtbot, panel, tmp_path, case, said):
    from core.annotations import AnnotationStore
    from core.annotations.model import Annotation
    from shapely.geometry import box

    before = [Annotation(box(0, 0, 500, 500), "Benign")]
    panel.project.save_annotations(panel.ids[0], AnnotationStore(before, panel.project.classes))
    dialog = open_mask_dialog(qtbot, panel)
    mask = label_mask(tmp_path / "labels.png", size=(100, 100) if case == "wrong size" else (128, 96))
    path = tmp_path / "absent.png" if case == "missing file" else mask
    if case != "missing file":
        choose_mask(qtbot, dialog, path)
    else:
        dialog.path_edit.setText(str(path))
    type_into(qtbot, dialog.map_edit, {"unknown value": "7=Tumour", "bad map": "1:Tumour"}.get(case, "1=Tumour"))
    if case == "bad downsample":
        dialog.downsample.setValue(8)

    with qtbot.waitSignal(dialog.failed, timeout=TIMEOUT):
        qtbot.mouseClick(dialog.import_button, Qt.LeftButton)

    assert dialog.error_label.isVisible() and said in dialog.error, dialog.error
    if case == "unknown value":
        assert "value 7 (Tumour) does not occur in the mask" in dialog.error
    assert dialog.isVisible() and dialog.path_edit.text() == str(path)  # what was typed stays
    assert dialog.import_button.isEnabled()
    after = panel.project.load_annotations(panel.ids[0]).annotations()
    assert [(m.class_name, m.geometry.bounds) for m in after] == [("Benign", (0.0, 0.0, 500.0, 500.0))]


def grey_mask(path: Path) -> Path:
    """A blurred 0/255 mask saved as JPEG with three equal channels, as camelyon-mini's masks are."""
    mask = np.zeros((SLIDE_H // 16, SLIDE_W // 16), np.uint8)
    mask[20:70, 30:90] = 255
    mask = cv2.GaussianBlur(mask, (17, 17), 0)
    cv2.imwrite(str(path), cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def test_a_grey_mask_is_cut_at_the_threshold(qtbot, panel, tmp_path):
    pytest.importorskip("core.annotations.from_mask").binarise  # helper B's threshold for grey masks
    dialog = open_mask_dialog(qtbot, panel)
    choose_mask(qtbot, dialog, grey_mask(tmp_path / "grey.png"))
    assert dialog.grey_mode.isChecked() and dialog.threshold.isEnabled() and dialog.threshold.value() == 127
    assert dialog.map_edit.text() == "1=Tumour"
    with qtbot.waitSignal(dialog.imported, timeout=TIMEOUT):
        qtbot.mouseClick(dialog.import_button, Qt.LeftButton)
    (mark,) = panel.project.load_annotations(panel.ids[0]).annotations()
    assert mark.class_name == "Tumour"
    assert mark.geometry.area == pytest.approx(50 * 16 * 60 * 16, rel=0.08)  # the blur's midline


# -- patch folders ---------------------------------------------------------------------------------
def patch_folder(folder: Path, mpp: float | None = 0.5, n: int = 24, side: int = 64) -> Path:
    """Two class folders of 64 px patches that differ in colour and texture, with a dataset.json."""
    rng = np.random.default_rng(0)
    for name, base in (("tumour", (120, 40, 140)), ("normal", (230, 180, 200))):
        sub = folder / name
        sub.mkdir(parents=True)
        for i in range(n):
            noise = rng.integers(-25, 25, (side, side, 3))
            image = np.clip(np.array(base)[None, None, ::-1] + noise, 0, 255).astype(np.uint8)
            cv2.imwrite(str(sub / f"{i}.png"), image)
    doc = {"classes": {"tumour": "Tumour", "normal": "Non-tumour"}}
    if mpp is not None:
        doc["mpp"] = mpp
    (folder / "dataset.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def test_a_patch_folder_shows_its_classes_and_its_scale_from_dataset_json(qtbot, panel, tmp_path):
    pytest.importorskip("core.tiles.patches")
    panel.source_tabs.setCurrentIndex(1)
    box = panel.patch_box
    type_into(qtbot, box.folder_edit, str(patch_folder(tmp_path / "patches")))
    assert box.classes_label.text() == "Classes: normal (24) → Non-tumour, tumour (24) → Tumour"
    assert box.mpp_edit.text() == "0.5" and box.mpp_source.text() == "from dataset.json"
    assert not box.warning.isVisible()
    type_into(qtbot, box.mpp_edit, "")  # cleared: dataset.json's scale is used, and shown again
    assert box.mpp_edit.text() == "0.5" and box.mpp_source.text() == "from dataset.json"

    type_into(qtbot, box.folder_edit, str(patch_folder(tmp_path / "unscaled", mpp=None)))
    assert box.mpp_edit.text() == "" and box.warning.isVisible() and "cannot predict slides" in box.warning.text()
    type_into(qtbot, box.mpp_edit, "0.25")
    assert not box.warning.isVisible() and box.mpp_source.text() == "typed here"


@pytest.mark.parametrize("typed, said", [("-1", "must be above 0"), ("900", "outside 0.05 to 50 µm/px")])
def test_a_patch_scale_that_is_not_one_is_refused_when_starting(qtbot, panel, tmp_path, typed, said):
    panel.source_tabs.setCurrentIndex(1)
    pytest.importorskip("core.tiles.patches")
    type_into(qtbot, panel.patch_box.folder_edit, str(patch_folder(tmp_path / "patches")))
    type_into(qtbot, panel.patch_box.mpp_edit, typed)
    assert said in panel.patch_box.mpp_source.text()
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert not panel.running and said in panel.error and "Patch scale" in panel.error
    assert panel.patch_box.mpp_edit.text() == typed  # kept, to be corrected
    assert not (Path(panel.project.folder) / "models").exists()


def test_training_on_a_scaled_patch_folder_records_its_scale_and_threshold(qtbot, panel, tmp_path):
    pytest.importorskip("core.tiles.patches")
    from core.models.bundle import default_threshold, read_info

    panel.source_tabs.setCurrentIndex(1)
    type_into(qtbot, panel.patch_box.folder_edit, str(patch_folder(tmp_path / "patches", mpp=0.5)))
    panel.tile_px.setValue(32)
    panel.tile_mpp.setValue(1.0)  # 64 px at 0.5 µm/px: one 32 px tile at 1 µm/px per patch
    panel.epochs.setValue(2)
    panel.batch_size.setValue(8)
    panel.device.setCurrentText("cpu")
    # the stain settings a real cohort wants: H&E jitter, and a Reinhard normalisation the model keeps
    from core.tiles.stain import STAIN_AUGMENTS, STAIN_NORMALISE
    augments = [panel.stain_augment.itemData(i) for i in range(panel.stain_augment.count())]
    normalisers = [panel.stain_normalise.itemData(i) for i in range(panel.stain_normalise.count())]
    assert sorted(augments) == sorted(STAIN_AUGMENTS) and sorted(normalisers) == sorted(STAIN_NORMALISE)
    assert (panel.stain_augment.currentData(), panel.stain_normalise.currentData()) == ("light", "none")  # train's
    panel.stain_augment.setCurrentIndex(augments.index("hed"))
    panel.stain_normalise.setCurrentIndex(normalisers.index("reinhard"))
    with qtbot.waitSignal(panel.run_ended, timeout=120_000) as ended:
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert ended.args == ["finished"], panel.error
    info = read_info(panel.result.bundle)
    assert info.mpp == 1.0 and info.tile_px == 32
    assert info.stain["method"] == "reinhard"  # recorded, so every prediction normalises the same way
    settings = json.loads((panel.result.bundle / "model.json").read_text())["training"]["settings"]
    assert settings["stain_augment"] == "hed"
    assert "48 patches → 48 tiles of 32 px at 1 µm/px (patch scale from dataset.json)" in panel.split_text
    value, _ = default_threshold(info)
    label = panel.best_box.threshold_label
    assert label.isVisible() and f"Operating threshold {value:g}" in label.text()


@pytest.mark.skipif(not SHARED_PATCHES.is_dir(), reason=f"shared patches not found at {SHARED_PATCHES}")
def test_the_shared_lung_patches_list_their_three_classes(qtbot, panel):
    pytest.importorskip("core.tiles.patches")
    panel.source_tabs.setCurrentIndex(1)
    type_into(qtbot, panel.patch_box.folder_edit, str(SHARED_PATCHES))
    text = panel.patch_box.classes_label.text()
    assert all(f"{name} (300)" in text for name in ("lung_aca", "lung_n", "lung_scc")), text
