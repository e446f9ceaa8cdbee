"""The HTML report's 2x2 table: the study's layout, counts written as the window writes them."""

from __future__ import annotations

from core.evaluation.report import _confusion_table


def test_the_report_table_puts_thousands_separators_in_every_count():
    html = _confusion_table({"tn": 1277, "fp": 2, "fn": 8, "tp": 1166})
    assert "<td class='num ok'>1,277</td>" in html and "<td class='num ok'>1,166</td>" in html
    assert "<td class=num>1,285</td>" in html  # tn + fn: screening negatives
    assert "<td class=num>2,453</td>" in html  # all tiles
    assert "True diagnosis" in html and "Screening test" in html
