"""Human-readable text for slide metadata (``biopsia info``)."""

from __future__ import annotations

import re

from core.slide.base import SlideInfo

#: Longest property value printed in full; slide descriptions can run to megabytes.
MAX_VALUE_CHARS = 2000
# C0 and C1 control characters, DEL included: a file's text must not drive the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def describe(info: SlideInfo, show_properties: bool = True) -> str:
    """A plain-text report of a slide's metadata."""
    mpp = f"{info.mpp[0]:.4f} x {info.mpp[1]:.4f} µm/px" if info.mpp else "unknown (not stored in the file)"
    lines = [
        f"File:          {info.path}",
        f"Format:        {printable(info.vendor)} (backend: {info.backend})",
        f"Dimensions:    {info.dimensions[0]} x {info.dimensions[1]} px",
        f"Resolution:    {mpp}",
        f"Objective:     {f'{info.objective_power:g}x' if info.objective_power else 'unknown'}",
        f"Colour:        {'embedded ICC profile' if info.has_icc_profile else 'no ICC profile'}",
        f"Associated:    {printable(', '.join(info.associated_images)) or 'none'}",
        f"Levels:        {info.level_count}",
    ]
    for level, ((w, h), ds) in enumerate(zip(info.level_dimensions, info.level_downsamples)):
        lines.append(f"  level {level}:     {w} x {h} px, downsample {ds:g}")
    if show_properties and info.properties:
        lines.append("Properties:")
        width = min(48, max(len(k) for k in info.properties))
        lines += [f"  {printable(k):<{width}} {printable(v)}" for k, v in sorted(info.properties.items())]
    return "\n".join(lines)


def printable(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``) and cut after ``limit`` characters."""
    text = str(text)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).replace("\t", " ").replace("\n", " | ")
    return text + (f" [... {cut:,} more characters]" if cut > 0 else "")
