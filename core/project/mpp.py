"""Which micrometres per pixel a slide has, and where that value came from: the one place that decides.

A value entered for the slide wins over the file's, since users enter one to correct a wrong or missing
calibration. Two places hold entered values: the slide's settings in its project (they travel with the
project) and the user's per-file store (`core.project.slide_settings`, for slides named without a
project, e.g. on the command line). The window's "Set resolution" writes both (`remember_mpp`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from core.project.model import Project, SlideEntry, existing_default_project
from core.project.settings import mpp_pair
from core.project.slide_settings import SlideSettingsStore


class MppSource(enum.StrEnum):
    """Where a slide's µm/px came from."""

    PROJECT = "project"  # the slide's settings in its project
    USER = "user"  # the user's per-file store
    FILE = "file"  # the slide file's own calibration
    COMMAND_LINE = "--slide-mpp"  # given on this command line (and stored as a USER or PROJECT value)


@dataclass(frozen=True)
class SlideMpp:
    """A slide's µm/px (x, y) and its source; both None when nothing gives one."""

    mpp: tuple[float, float] | None
    source: MppSource | None

    def __iter__(self):  # ``mpp, source = resolve_mpp(...)``
        return iter((self.mpp, self.source))


NO_MPP = SlideMpp(None, None)


def resolve_mpp(slide_path=None, file_mpp=None, entry: SlideEntry | None = None,
                store: SlideSettingsStore | None = None) -> SlideMpp:
    """The micrometres per pixel to use for a slide, and where it came from.

    Parameters
    ----------
    slide_path : path-like or None
        The slide file (None for an in-memory slide: the user's store is then not asked).
    file_mpp : (float, float) or None
        What the file records (``reader.mpp``); leave it None to get only an entered value,
        for callers that open the slide later (`core.tiles.dataset.SlideSource.mpp`).
    entry : SlideEntry, optional
        The slide in its project: its ``settings.mpp_override`` comes first.
    store : SlideSettingsStore, optional
        The user's per-file values; defaults to the user's own store (``SlideSettingsStore()``).

    Returns
    -------
    SlideMpp
        Project override, else the user's value for this file, else the file's, else ``(None, None)``.
    """
    if entry is not None and entry.settings.mpp_override is not None:
        return SlideMpp(entry.settings.mpp_override, MppSource.PROJECT)
    if slide_path is not None:
        override = (store if store is not None else SlideSettingsStore()).get_mpp_override(slide_path)
        if override is not None:
            return SlideMpp(override, MppSource.USER)
    if file_mpp is not None:
        return SlideMpp((float(file_mpp[0]), float(file_mpp[1])), MppSource.FILE)
    return NO_MPP


def resolve_file_mpp(slide_path, file_mpp=None, store: SlideSettingsStore | None = None,
                     project: Project | None = None) -> SlideMpp:
    """The µm/px of a slide named by its file alone (the command line), as the window gives it.

    A slide opened without a project belongs to the user's default project, so its entry there
    counts as its project's (`resolve_mpp`).

    Parameters
    ----------
    slide_path : path-like
    file_mpp : (float, float) or None
        What the file records, or None for only an entered value.
    store : SlideSettingsStore, optional
    project : Project, optional
        Defaults to the user's default project if it exists (a headless run never creates it).

    Returns
    -------
    SlideMpp

    Raises
    ------
    ProjectError
        When the default project cannot be opened.
    """
    project = project if project is not None else existing_default_project()
    entry = project.find_slide(slide_path) if project is not None else None
    return resolve_mpp(slide_path, file_mpp, entry, store)


def remember_mpp(slide_path, mpp, project: Project | None = None, entry: SlideEntry | None = None,
                 store: SlideSettingsStore | None = None) -> SlideMpp:
    """Keep a µm/px the user entered for a slide: in its project (when given) and in the user's store.

    Both are written so that the window, a training run on the project and a command naming the slide
    file all find the same value (`resolve_mpp`).

    Parameters
    ----------
    slide_path : path-like
    mpp : float or (float, float)
        A single number means square pixels.
    project, entry : Project and SlideEntry, optional
        The project the slide is open in and its entry there.
    store : SlideSettingsStore, optional
        Defaults to the user's own store.

    Returns
    -------
    SlideMpp
        What `resolve_mpp` now gives for the slide.

    Raises
    ------
    ValueError
        When ``mpp`` is not positive and finite (nothing is written).
    ProjectError
        When the project cannot be saved.
    OSError
        When the user's store cannot be written (the project, if given, already holds the value).
    """
    pair = mpp_pair(mpp)
    if pair is None:
        raise ValueError("a µm/px to remember is needed (got None)")
    if project is not None and entry is not None:
        entry = project.update_settings(entry.id, mpp_override=pair)
    (store if store is not None else SlideSettingsStore()).set_mpp_override(Path(slide_path), pair)
    return resolve_mpp(slide_path, None, entry, store)


def remember_file_mpp(slide_path, mpp, store: SlideSettingsStore | None = None,
                      project: Project | None = None) -> SlideMpp:
    """Keep a µm/px given for a slide named by its file alone (the command line), where `resolve_file_mpp` looks.

    The user's store always gets it; so does the slide's entry in ``project`` (by default the user's
    default project, only if it exists and already holds the slide: it is never created for this).

    Parameters
    ----------
    slide_path : path-like
    mpp : float or (float, float)
    store : SlideSettingsStore, optional
    project : Project, optional

    Returns
    -------
    SlideMpp
        What `resolve_file_mpp` now gives for the slide.

    Raises
    ------
    ValueError, ProjectError, OSError
        As `remember_mpp`.
    """
    project = project if project is not None else existing_default_project()
    entry = project.find_slide(slide_path) if project is not None else None
    return remember_mpp(slide_path, mpp, project if entry is not None else None, entry, store)
