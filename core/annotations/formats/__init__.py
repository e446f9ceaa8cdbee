"""Annotation exchange formats: QuPath GeoJSON, ASAP XML and Aperio ImageScope XML.

Every format module offers ``NAME``, ``EXTENSIONS``, ``DESCRIPTION``, ``sniff(data) -> bool``,
``parse(data, path) -> AnnotationSet`` and ``dump(annotations, classes) -> bytes``;
:func:`read_annotations` and :func:`write_annotations` pick one and handle the file.
All geometry is in level-0 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from core.annotations.formats import asap_xml, imagescope_xml, qupath_geojson
from core.annotations.formats._common import (DEFAULT_COLOR, MAX_FILE_BYTES, UNCLASSIFIED, AnnotationSet,
                                              class_colors, normalise_id, read_bytes, xml_root_tag)
from core.annotations.model import Annotation, AnnotationClass
from core.atomic import atomic_write_bytes
from core.errors import AnnotationFormatError

#: Format modules by name.
FORMATS = {"geojson": qupath_geojson, "asap": asap_xml, "imagescope": imagescope_xml}
#: The format written for a ``.xml`` path unless another is asked for.
DEFAULT_XML_FORMAT = "asap"

__all__ = ["AnnotationSet", "DEFAULT_COLOR", "FORMATS", "MAX_FILE_BYTES", "UNCLASSIFIED", "read_annotations", "write_annotations",
           "format_for_reading", "format_for_writing", "class_colors", "normalise_id", "read_bytes"]


def format_for_reading(path, data: bytes):
    """The format module for a file, from its extension and, for XML, its root element."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in qupath_geojson.EXTENSIONS:
        return qupath_geojson
    if suffix == ".xml" or data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        for module in (asap_xml, imagescope_xml):
            if module.sniff(data):
                return module
        root = xml_root_tag(data)
        what = f"root element <{root[:40]}>" if root else "no XML element found"
        raise AnnotationFormatError(f"{path}: not an ASAP or ImageScope annotation file ({what}; expected "
                                    "<ASAP_Annotations> or <Annotations>)")
    if qupath_geojson.sniff(data):
        return qupath_geojson
    raise AnnotationFormatError(f"{path}: unknown annotation format (expected .geojson, .json or .xml: "
                                "QuPath GeoJSON, ASAP XML or ImageScope XML)")


def read_annotations(path) -> AnnotationSet:
    """Read the annotations of a QuPath GeoJSON, ASAP XML or ImageScope XML file.

    Parameters
    ----------
    path : path-like
        ``.geojson``/``.json`` (QuPath GeoJSON) or ``.xml`` (ASAP or ImageScope, told apart by
        the root element); other extensions are recognised by content.

    Returns
    -------
    AnnotationSet
        Annotations in level-0 pixels (snapped to the 1/1000 pixel the formats keep), the classes
        found, and warnings about repairs made (self-intersecting polygons repaired, degenerate or
        hopelessly self-crossing ones and non-area objects dropped, notes and names cleaned of
        characters no annotation file can hold).

    Raises
    ------
    AnnotationFormatError
        When the file is missing, unreadable, too large, not an annotation file, or malformed
        (non-finite or out-of-range coordinates, XML with a DOCTYPE or entity declarations, JSON
        nested beyond what the parser follows); the message starts with the path and says where
        the problem is. No other exception escapes for any file content.
    """
    data = read_bytes(path)
    return format_for_reading(path, data).parse(data, Path(path))


def format_for_writing(path, format: str | None = None):
    """The format module for writing ``path``: ``format`` by name, else by extension (``.xml`` is ASAP)."""
    if format is not None:
        if format not in FORMATS:
            raise AnnotationFormatError(f"{path}: unknown annotation format {format!r} "
                                        f"(choose from {', '.join(FORMATS)})")
        return FORMATS[format]
    suffix = Path(path).suffix.lower()
    if suffix in qupath_geojson.EXTENSIONS:
        return qupath_geojson
    if suffix == ".xml":
        return FORMATS[DEFAULT_XML_FORMAT]
    raise AnnotationFormatError(f"{path}: cannot tell the annotation format from the extension "
                                "(use .geojson for QuPath, .xml for ASAP or ImageScope)")


def write_annotations(path, annotations: Iterable[Annotation], classes: Iterable[AnnotationClass],
                      format: str | None = None) -> None:
    """Write annotations atomically (temporary file, fsync, rename), chosen by extension.

    Parameters
    ----------
    path : path-like
        ``.geojson``/``.json`` writes QuPath GeoJSON; ``.xml`` writes ASAP XML unless
        ``format="imagescope"``.
    annotations : iterable of Annotation
        Geometry in level-0 pixels.
    classes : iterable of AnnotationClass
        Colours for the class names used (others get a default colour).
    format : {'geojson', 'asap', 'imagescope'}, optional
        Overrides the choice by extension.

    Raises
    ------
    AnnotationFormatError
        For an unknown format or extension.
    OSError
        When the file cannot be written (``err.filename`` is the path); the old file is untouched.
    """
    module = format_for_writing(path, format)
    atomic_write_bytes(path, module.dump(list(annotations), list(classes)))
