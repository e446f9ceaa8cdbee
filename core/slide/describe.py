"""Human-readable text for slide metadata (``biopsia info``)."""

from __future__ import annotations

from core.slide.base import SlideInfo


def describe(info: SlideInfo, show_properties: bool = True) -> str:
    """A plain-text report of a slide's metadata."""
    mpp = f"{info.mpp[0]:.4f} x {info.mpp[1]:.4f} µm/px" if info.mpp else "unknown (not stored in the file)"
    lines = [
        f"File:          {info.path}",
        f"Format:        {info.vendor} (backend: {info.backend})",
        f"Dimensions:    {info.dimensions[0]} x {info.dimensions[1]} px",
        f"Resolution:    {mpp}",
        f"Objective:     {f'{info.objective_power:g}x' if info.objective_power else 'unknown'}",
        f"Colour:        {'embedded ICC profile' if info.has_icc_profile else 'no ICC profile'}",
        f"Associated:    {', '.join(info.associated_images) or 'none'}",
        f"Levels:        {info.level_count}",
    ]
    for level, ((w, h), ds) in enumerate(zip(info.level_dimensions, info.level_downsamples)):
        lines.append(f"  level {level}:     {w} x {h} px, downsample {ds:g}")
    if show_properties and info.properties:
        lines.append("Properties:")
        width = min(48, max(len(k) for k in info.properties))
        lines += [f"  {k:<{width}} {v}" for k, v in sorted(info.properties.items())]
    return "\n".join(lines)
