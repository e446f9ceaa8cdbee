"""Text a mark carries (note, class name, id), made safe for every file Biopsia writes it to.

One owner for the rule, used by every reader and every writer: a note read from a file, typed in
the window or replayed from a journal is saved the same way, and a save never fails on its content.
"""

from __future__ import annotations

import re

# What UTF-8 cannot encode (lone surrogates) or XML 1.0 cannot hold (C0 controls other than tab,
# line feed and carriage return; U+FFFE and U+FFFF).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean_text(text: str) -> str:
    """``text`` as an annotation file can hold it, unchanged when it already can.

    * a surrogate pair written as two code points becomes the character it encodes;
    * a lone surrogate (half of a broken character) becomes U+FFFD, the replacement character;
    * control characters other than tab, line feed and carriage return are removed, and so are
      U+FFFE and U+FFFF (XML 1.0 cannot hold them).

    Parameters
    ----------
    text : str
        Any text; a non-string is turned into one with ``str``.

    Returns
    -------
    str
        Text that encodes as UTF-8 and can stand in an XML 1.0 attribute (once escaped).
    """
    if not isinstance(text, str):
        text = str(text)
    if not _UNSAFE.search(text):
        return text
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _NOT_XML.sub("", text)


def is_clean(text: str) -> bool:
    """Whether :func:`clean_text` would leave ``text`` as it is."""
    return isinstance(text, str) and not _UNSAFE.search(text)
