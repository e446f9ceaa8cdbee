"""A project: a folder holding a list of slides, the class list, and each slide's annotations.

The folder's layout is `core.project.layout`; each slide's settings are a
`core.project.settings.SlideSettings`.

Nothing is ever written beside a slide, so slides on read-only media work. Slides are
recorded by absolute path, and also relative to the project folder when they lie inside
it, so a project folder that carries its slides can be moved.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from core import paths
from core.annotations.model import DEFAULT_CLASSES, AnnotationClass
from core.annotations.store import AnnotationStore
from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError
from core.project.autosave import AutoSaver, load_saved, write_snapshot
from core.project.layout import ANNOTATION_SUFFIX, ANNOTATIONS_DIR, PROJECT_FILE
from core.project.settings import SlideSettings

FORMAT = "biopsia-project"
FORMAT_VERSION = 1


class ProjectError(BiopsiaError):
    """A project folder is missing, unreadable, damaged, or from a newer Biopsia."""


@dataclass
class SlideEntry:
    """One slide of a project.

    Attributes
    ----------
    id : str
        Stable identifier, also the stem of the slide's annotation file.
    path : Path
        Absolute path of the slide file.
    name : str
        Display name (the file name by default).
    relative_path : str or None
        Path relative to the project folder when the slide lies inside it.
    settings : SlideSettings
        ``fully_annotated``, ``mpp_override`` and keys this version does not know; change them with
        `Project.update_settings`.
    annotations_read_only : bool
        Set (in memory only) when the annotation file exists but could not be read:
        Biopsia must then never overwrite it.
    """

    id: str
    path: Path
    name: str
    relative_path: str | None = None
    settings: SlideSettings = field(default_factory=SlideSettings)
    annotations_read_only: bool = False

    def to_json(self) -> dict:
        return {"id": self.id, "path": str(self.path), "relative_path": self.relative_path,
                "name": self.name, "settings": self.settings.to_json()}


class Project:
    """A project folder; use :meth:`create`, :meth:`open` or :func:`default_project`.

    Changes to the slide list and settings are saved at once (atomically, keeping
    ``project.json.bak``). ``warnings`` collects things the user should be told
    (a damaged project.json replaced by its backup, annotation-file warnings).
    """

    def __init__(self, folder: Path, name: str, classes=DEFAULT_CLASSES, slides=(), extra: dict | None = None):
        self.folder = Path(folder)
        self.name = name
        self.classes: tuple[AnnotationClass, ...] = tuple(classes)
        self._slides: dict[str, SlideEntry] = {s.id: s for s in slides}
        self._extra = dict(extra or {})  # unknown top-level keys, kept on save
        self.warnings: list[str] = []

    # -- opening -----------------------------------------------------------------
    @classmethod
    def create(cls, folder, name: str | None = None, classes=DEFAULT_CLASSES) -> "Project":
        """Make a new, empty project in ``folder`` (created if needed).

        Parameters
        ----------
        folder : path-like
        name : str, optional
            Defaults to the folder's name.
        classes : sequence of AnnotationClass, optional

        Raises
        ------
        ProjectError
            When the folder already holds a project or cannot be written.
        """
        folder = Path(folder).expanduser().absolute()
        if (folder / PROJECT_FILE).exists():
            raise ProjectError(f"{folder / PROJECT_FILE}: a project already exists here (open it instead)")
        try:
            (folder / ANNOTATIONS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ProjectError(f"{folder}: cannot create the project folder: {err.strerror or err}") from err
        project = cls(folder, name or folder.name, classes)
        project.save()
        return project

    @classmethod
    def open(cls, folder) -> "Project":
        """Open the project in ``folder``.

        A damaged ``project.json`` is replaced by ``project.json.bak`` when that one is
        valid, with a note in ``warnings``.

        Raises
        ------
        ProjectError
            When ``project.json`` is missing, unreadable or damaged (with no usable
            backup), or was written by a newer Biopsia; the message names the file.
        """
        folder = Path(folder).expanduser().absolute()
        path = folder / PROJECT_FILE
        bak = path.with_name(path.name + ".bak")
        try:
            data = _read_json(path)
        except _Unreadable as err:  # a newer version is not "unreadable": it is refused, not replaced
            try:
                data = _read_json(bak)
            except ProjectError:
                raise ProjectError(str(err)) from None
            project = cls._from_json(folder, data)
            project.warnings.append(f"{err}; opened the previous copy {bak.name} instead "
                                    "(changes made since it was saved may be missing)")
            return project
        return cls._from_json(folder, data)

    @classmethod
    def _from_json(cls, folder: Path, data: dict) -> "Project":
        classes = tuple(AnnotationClass(c["name"], tuple(int(v) for v in c["color"])) for c in data["classes"])
        slides = []
        for raw in data["slides"]:
            entry = SlideEntry(id=str(raw["id"]), path=Path(raw["path"]), name=str(raw.get("name") or ""),
                               relative_path=raw.get("relative_path"),
                               settings=SlideSettings.from_json(raw.get("settings")))
            if not entry.path.exists() and entry.relative_path:
                moved = (folder / entry.relative_path).absolute()
                if moved.exists():  # the project folder was moved together with its slides
                    entry.path = moved
            entry.name = entry.name or entry.path.name
            slides.append(entry)
        known = {"format", "version", "name", "classes", "slides"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(folder, str(data.get("name") or folder.name), classes, slides, extra)

    # -- saving ------------------------------------------------------------------
    @property
    def json_path(self) -> Path:
        """``<folder>/project.json``."""
        return self.folder / PROJECT_FILE

    def save(self) -> None:
        """Write ``project.json`` atomically, keeping the previous one as ``project.json.bak``.

        Raises
        ------
        ProjectError
            When the file cannot be written (disk full, read-only folder); the old file is intact.
        """
        data = {**self._extra, "format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "classes": [{"name": c.name, "color": list(c.color)} for c in self.classes],
                "slides": [s.to_json() for s in self._slides.values()]}
        text = json.dumps(data, indent=1, ensure_ascii=True) + "\n"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # A damaged project.json (opened from its backup) must not become the backup.
            atomic_write_bytes(self.json_path, text.encode("ascii"), backup=True, worth_keeping=_is_project_file)
        except OSError as err:
            raise ProjectError(f"{self.json_path}: could not save the project: {err.strerror or err}") from err

    # -- slides --------------------------------------------------------------------
    @property
    def slides(self) -> list[SlideEntry]:
        """The slides, in the order they were added."""
        return list(self._slides.values())

    def slide(self, slide_id: str) -> SlideEntry:
        """The entry with this id; raises KeyError when there is none."""
        try:
            return self._slides[slide_id]
        except KeyError:
            raise KeyError(f"project {self.name!r} has no slide {slide_id!r}") from None

    def find_slide(self, path) -> SlideEntry | None:
        """The entry for the slide file at ``path`` (compared after resolving links), or None."""
        resolved = _resolved(path)
        return next((s for s in self._slides.values() if _resolved(s.path) == resolved), None)

    def add_slide(self, path, name: str | None = None) -> SlideEntry:
        """Add a slide file and save the project; adding the same file again returns its entry.

        Parameters
        ----------
        path : path-like
            The slide file. It is only recorded, never written to.
        name : str, optional
            Display name; defaults to the file name.

        Raises
        ------
        ProjectError
            When the file does not exist, or the project cannot be saved.
        """
        existing = self.find_slide(path)
        if existing is not None:
            return existing
        slide_path = Path(path).expanduser().absolute()
        if not slide_path.exists():
            raise ProjectError(f"{slide_path}: slide file not found, so it cannot be added to the project")
        entry = SlideEntry(id=self._new_id(slide_path), path=slide_path, name=name or slide_path.name,
                           relative_path=self._relative(slide_path))
        self._slides[entry.id] = entry
        self.save()
        return entry

    def remove_slide(self, slide_id: str) -> None:
        """Take a slide out of the project and save. Its annotation file is kept
        (adding the same file again brings the annotations back)."""
        self.slide(slide_id)
        del self._slides[slide_id]
        self.save()

    def update_settings(self, slide_id: str, **changes) -> SlideEntry:
        """Change settings of one slide (``fully_annotated=True``, ``mpp_override=(x, y)``) and save.

        Raises
        ------
        TypeError, ValueError
            For a setting that does not exist or a value of the wrong kind (nothing changes).
        ProjectError
            When the project cannot be saved (the entry keeps its new settings in memory).
        """
        entry = self.slide(slide_id)
        entry.settings = entry.settings.changed(**changes)
        self.save()
        return entry

    def set_classes(self, classes) -> None:
        """Replace the project's class list and save."""
        self.classes = tuple(classes)
        self.save()

    def _new_id(self, slide_path: Path) -> str:
        """A readable id from the file name plus a hash of its resolved path, stable across add/remove."""
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", slide_path.name.split(".")[0]).strip("-")[:40] or "slide"
        digest = hashlib.sha1(str(_resolved(slide_path)).encode("utf-8")).hexdigest()
        for n in range(8, len(digest) + 1):
            slide_id = f"{stem}-{digest[:n]}"
            if slide_id not in self._slides:
                return slide_id
        raise ProjectError(f"{self.json_path}: could not make a unique id for {slide_path}")

    def _relative(self, slide_path: Path) -> str | None:
        """The path relative to the project folder, or None when the slide lies outside it."""
        slide, folder = _resolved(slide_path), _resolved(self.folder)
        return slide.relative_to(folder).as_posix() if slide.is_relative_to(folder) else None

    # -- annotations ---------------------------------------------------------------
    def annotations_path(self, slide_id: str) -> Path:
        """``<folder>/annotations/<slide-id>.geojson`` (it may not exist yet)."""
        self.slide(slide_id)
        return self.folder / ANNOTATIONS_DIR / f"{slide_id}{ANNOTATION_SUFFIX}"

    def load_annotations(self, slide_id: str) -> AnnotationStore:
        """A store holding the slide's saved annotations, with the project's classes.

        The annotation file is read with its journal of later edits replayed
        (:func:`core.project.autosave.load_saved`); what the file holds that Biopsia cannot show is kept
        in ``store.foreign`` and written back. Classes found but not in the project are added
        after the project's. Warnings from the reader are appended to ``warnings``.

        Raises
        ------
        AnnotationFormatError
            When the file is malformed or cannot be read. The entry is then marked read-only,
            so that :meth:`autosaver` and :meth:`save_annotations` refuse to overwrite it.
        """
        entry = self.slide(slide_id)
        path = self.annotations_path(slide_id)
        entry.annotations_read_only = True  # until it is read: a file we could not read is never clobbered
        loaded = load_saved(path)
        entry.annotations_read_only = False
        names = {c.name for c in self.classes}
        classes = self.classes + tuple(c for c in loaded.classes if c.name not in names)
        self.warnings.extend(loaded.warnings)  # each already names the file
        return AnnotationStore(loaded.annotations, classes, foreign=loaded.foreign, origin=loaded.origin)

    def save_annotations(self, slide_id: str, store: AnnotationStore) -> None:
        """Write a store's annotations now (atomically, keeping ``.bak``); see also :meth:`autosaver`.

        Raises
        ------
        ProjectError
            When the entry is read-only (its file could not be read).
        OSError
            When the file cannot be written.
        """
        self._check_writable(slide_id)
        write_snapshot(self.annotations_path(slide_id), store.annotations(), store.classes, store.foreign)

    def autosaver(self, slide_id: str, store: AnnotationStore, **kwargs):
        """An :class:`core.project.autosave.AutoSaver` that keeps this slide's annotation file up to date.

        Parameters
        ----------
        slide_id : str
        store : AnnotationStore
            Usually the one returned by :meth:`load_annotations`.
        **kwargs
            Passed on (``delay``, ``on_error``, ``on_saved``).

        Raises
        ------
        ProjectError
            When the slide's annotation file could not be read: it is never overwritten.
        """
        self._check_writable(slide_id)
        return AutoSaver(store, self.annotations_path(slide_id), **kwargs)

    def _check_writable(self, slide_id: str) -> None:
        """Refuse to write over an annotation file that could not be read."""
        if self.slide(slide_id).annotations_read_only:
            path = self.annotations_path(slide_id)
            raise ProjectError(f"{path}: this annotation file could not be read, so Biopsia will not "
                               "overwrite it (repair or move the file, then open the slide again)")


def default_project() -> Project:
    """The project used when a slide is opened without one: ``<data dir>/default-project``,
    created on first use."""
    folder = paths.data_dir() / "default-project"
    if (folder / PROJECT_FILE).exists() or (folder / (PROJECT_FILE + ".bak")).exists():
        return Project.open(folder)
    return Project.create(folder, "Default project")


def existing_default_project() -> Project | None:
    """The default project if it has been created (see `default_project`), else None; never creates it."""
    folder = paths.data_dir() / "default-project"
    if (folder / PROJECT_FILE).exists() or (folder / (PROJECT_FILE + ".bak")).exists():
        return Project.open(folder)
    return None


class _Unreadable(ProjectError):
    """project.json is missing, unreadable or not a valid project file (a backup may stand in)."""


def _read_json(path: Path) -> dict:
    """The parsed and checked contents of a project file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _Unreadable(f"{path}: no project here (project.json not found)") from None
    except OSError as err:
        raise _Unreadable(f"{path}: cannot read the project file: {err.strerror or err}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise _Unreadable(f"{path}: the project file is damaged ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _Unreadable(f"{path}: not a Biopsia project file")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise _Unreadable(f"{path}: the project file is damaged (bad version {version!r})")
    if version > FORMAT_VERSION:
        raise ProjectError(f"{path}: this project was saved by a newer Biopsia (project format {version}; "
                     f"this version reads up to {FORMAT_VERSION}). Update Biopsia to open it.")
    try:
        for c in data["classes"]:
            AnnotationClass(c["name"], tuple(int(v) for v in c["color"]))
        for s in data["slides"]:
            if not (isinstance(s, dict) and isinstance(s["id"], str) and isinstance(s["path"], str)):
                raise TypeError("bad slide entry")
            if not isinstance(s.get("settings") or {}, dict):
                raise TypeError("bad slide settings")
            try:
                SlideSettings.from_json(s.get("settings"))
            except ValueError as err:
                raise ValueError(f"slide {s['id']}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise _Unreadable(f"{path}: the project file is damaged ({err})") from None
    return data


def _is_project_file(path: Path) -> bool:
    """Whether ``path`` holds a readable project file (one from a newer Biopsia counts)."""
    try:
        _read_json(path)
    except _Unreadable:
        return False
    except ProjectError:
        return True
    return True


def _resolved(path) -> Path:
    """Absolute path with links resolved (missing files are fine)."""
    return Path(path).expanduser().resolve(strict=False)
