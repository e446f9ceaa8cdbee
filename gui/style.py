"""The window's colours and label styles, in one place; plots take theirs from `gui.plot_style`.

Strings, not Qt objects, so a style sheet, an HTML span or a pyqtgraph pen can use the same value.
"""

from __future__ import annotations

INK = "#37474f"  # text, axes and the training loss
MUTED = "#607d8b"  # captions and hints under a value
ACCENT = "#c2185b"  # the score that matters most (AUC) and the validation curve
BLUE, GREEN, ORANGE, GREY = "#1565c0", "#2e7d32", "#ef6c00", "#b0bec5"
ERROR = "#b71c1c"  # every error message, status line and warning label
WARN = "#8d6e00"  # a caution that is not an error (the demo model's limits)

ERROR_STYLE = f"color: {ERROR}"
MUTED_STYLE = f"color: {MUTED}"
#: An error shown as a box of its own (the training panel's failure report).
ERROR_BOX_STYLE = f"{ERROR_STYLE}; background: #ffebee; border: 1px solid #ef9a9a; border-radius: 3px; padding: 6px"
#: A caution shown as a box of its own (what the demo model is, a model without a recorded scale).
WARNING_BOX_STYLE = f"color: {WARN}; background: #fff8e1; border: 1px solid #ffe082; border-radius: 3px; padding: 6px"


def error_html(text: str) -> str:
    """``text`` (already HTML-escaped by the caller) in the error colour, for a rich-text label."""
    return f"<span style='{ERROR_STYLE}'>{text}</span>"
