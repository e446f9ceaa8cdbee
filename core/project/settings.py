"""A project slide's settings: typed, validated, and written back with any keys this version does not know."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

KNOWN_KEYS = ("fully_annotated", "mpp_override")


@dataclass(frozen=True)
class SlideSettings:
    """The settings a project keeps for one slide (``"settings"`` of its entry in project.json).

    Attributes
    ----------
    fully_annotated : bool
        Every tumour on the slide is marked, so unmarked tissue counts as non-tumour. False unless the
        user says so: only Benign marks then give non-tumour tiles.
    mpp_override : (float, float) or None
        Micrometres per pixel (x, y) entered for this slide in the project; it wins over the file's.
    extra : Mapping
        Keys of project.json this version does not know, kept as they were and written back.

    Raises
    ------
    ValueError
        When ``fully_annotated`` is not a bool or ``mpp_override`` is not two positive finite numbers.
    """

    fully_annotated: bool = False
    mpp_override: tuple[float, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if not isinstance(self.fully_annotated, bool):
            raise ValueError(f"fully_annotated must be true or false, got {self.fully_annotated!r}")
        object.__setattr__(self, "mpp_override", mpp_pair(self.mpp_override, "mpp_override"))
        clash = set(self.extra) & set(KNOWN_KEYS)
        if clash:
            raise ValueError(f"extra settings may not hold known keys: {sorted(clash)}")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_json(cls, raw: Mapping | None) -> "SlideSettings":
        """The settings from an entry's ``"settings"`` object (None or missing keys: the defaults).

        Raises
        ------
        ValueError
            When a known key holds a value of the wrong kind (the message names the key).
        """
        raw = dict(raw or {})
        fully = raw.pop("fully_annotated", None)
        mpp = raw.pop("mpp_override", None)
        return cls(fully_annotated=False if fully is None else fully, mpp_override=mpp, extra=raw)

    def to_json(self) -> dict:
        """The object written to project.json (unknown keys first, as read)."""
        mpp = None if self.mpp_override is None else list(self.mpp_override)
        return {**self.extra, "mpp_override": mpp, "fully_annotated": self.fully_annotated}

    def changed(self, **changes) -> "SlideSettings":
        """A copy with some settings changed (validated like the constructor).

        Raises
        ------
        TypeError
            For a setting that does not exist.
        ValueError
            For a value of the wrong kind.
        """
        unknown = set(changes) - set(KNOWN_KEYS)
        if unknown:
            raise TypeError(f"no such slide setting: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def mpp_pair(value, what: str = "micrometres per pixel") -> tuple[float, float] | None:
    """``value`` as (x, y) µm/px: None, one number (square pixels) or two positive finite numbers.

    Parameters
    ----------
    value : None, float or pair of floats
    what : str
        Names the value in the error message.

    Raises
    ------
    ValueError
        When ``value`` is anything else.
    """
    if value is None:
        return None
    pair = (value, value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_positive(v) for v in pair):
        raise ValueError(f"{what} must be two positive numbers of micrometres per pixel, got {value!r}")
    return float(pair[0]), float(pair[1])


def _positive(value) -> bool:
    """Whether value is a finite number above zero."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
