"""XML for the ASAP and ImageScope formats: a streaming reader that refuses entity declarations,
and what writing needs (escaped attributes, coordinates as short text).

Reading uses expat directly, with handlers: no tree is built (10^6 vertices cost tens of megabytes,
not a gigabyte), any ``<!DOCTYPE`` (and so every entity declaration: billion laughs, external
entities) is refused as soon as expat meets it whatever the encoding, parameter entities are never
parsed and external ones never loaded, and nesting depth costs no recursion.
"""

from __future__ import annotations

import pyexpat
from typing import Callable

import numpy as np

from core.annotations.geometry import GRID_DECIMALS
from core.annotations.text import clean_text

ENTITIES_REFUSED = "XML entity declarations are not allowed (<!DOCTYPE or <!ENTITY found)"


class _Refused(Exception):
    """Raised inside expat's handlers when the document declares a DTD or an entity."""


def stream(data: bytes, reading, start: Callable[[str, list], None], end: Callable[[str], None]) -> None:
    """Feed every element of ``data`` to ``start(name, [attr, value, ...])`` and ``end(name)``.

    Raises
    ------
    AnnotationFormatError
        For XML that is not well-formed (with line and column), declares a DTD or entities, or
        names an encoding expat does not know; errors raised by the handlers pass through.
    """
    parser = pyexpat.ParserCreate()
    parser.ordered_attributes = True
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_args):
        raise _Refused

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except _Refused:
        raise reading.error("", ENTITIES_REFUSED) from None
    except pyexpat.ExpatError as err:
        raise reading.error("", f"not valid XML (truncated or damaged?) at line {err.lineno}, column {err.offset}: "
                                f"{pyexpat.ErrorString(err.code)}") from None
    except (LookupError, UnicodeError) as err:  # an encoding Python's codecs refuse
        raise reading.error("", f"not valid XML: {err}"[:300]) from None


def attributes(pairs: list) -> dict[str, str]:
    """expat's ordered ``[name, value, ...]`` as a dict."""
    return dict(zip(pairs[::2], pairs[1::2]))


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                          "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


def attr(text) -> str:
    """Text for a double-quoted attribute: cleaned of what XML 1.0 cannot hold, then escaped
    (tabs and line breaks as character references, so that reading gives them back)."""
    return clean_text(text).translate(_ESCAPES)


def numbers(values: np.ndarray) -> list[str]:
    """Coordinates as short text, vectorised: rounded to 1/1000 pixel, whole numbers without ``.0``."""
    rounded = np.round(np.asarray(values, dtype=np.float64), GRID_DECIMALS) + 0.0  # + 0.0: no "-0"
    if not len(rounded):
        return []
    if (rounded == np.floor(rounded)).all():
        return list(map(str, rounded.astype(np.int64).tolist()))
    return [s[:-2] if s.endswith(".0") else s for s in map(repr, rounded.tolist())]
