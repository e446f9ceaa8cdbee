"""Biopsia's window floor: Qt widgets that talk to ``core`` through plain objects."""
