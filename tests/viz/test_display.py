"""Tests of emlib.viz.display: the book's table style."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emlib.errors import ConfigError
from emlib.viz.display import format_value, readable_header, show_table


def _results(degenerate: bool | None) -> pd.DataFrame:
    df = pd.DataFrame({"train_set": ["lucchi_pp", "vnc"], "test_set": ["vnc", "vnc"], "iou_fg": [0.123456, np.nan],
                       "fd_high": [58.829885, 1.0], "weights_label": ["random weights"] * 2,
                       "claim": ["Single-dataset training: LoRA improves in-domain IoU_fg over the frozen backbone"] * 2})
    if degenerate is not None:
        df["degenerate"] = [False, degenerate]
    return df


def test_compact_table_with_full_toggle_download_and_badge() -> None:
    table = show_table(_results(None), ["train_set", "iou_fg", "claim"], caption="Runs")
    html = table._repr_html_()
    assert "<th>trained on</th><th>IoU_fg</th><th>claim</th>" in html  # readable headers, only these columns
    assert "0.123" in html and "0.123456" not in html.split("<details")[0] and "–" in html
    assert "over the frozen backbone</td>" in html  # never cut short with "..."
    assert '<span class="emlib-badge">random weights</span>' in html and "weights</th>" not in html.split("<details")[0]
    assert "Full table (2 rows, 6 columns)" in html and "58.830" in html
    assert 'download="runs.csv"' in html and 'class="emlib-scroll"' in html
    assert "Runs [random weights]" in repr(table)


def test_degenerate_rows_are_flagged_only_when_there_are_some() -> None:
    assert "degenerate" not in show_table(_results(None), ["iou_fg"]).shown
    assert "degenerate" not in show_table(_results(False), ["iou_fg"]).shown
    flagged = show_table(_results(True), ["iou_fg"])
    html = flagged._repr_html_()
    assert flagged.shown == ["iou_fg", "degenerate"] and flagged.flagged == 1
    assert 'class="emlib-flagged-row"' in html and "1 of 2 rows come from runs whose prediction was one class" in html


def test_formats_headers_and_errors() -> None:
    assert format_value(442368) == "442,368" and format_value(0.5, 1) == "0.5" and format_value(False) == "no"
    assert format_value(0.25, fmt="{:.0%}") == "25%" and format_value((4, 768)) == "4 x 768"
    assert readable_header("iou_fg_vnc") == "IoU_fg VNC" and readable_header("CV AUROC") == "CV AUROC"
    with pytest.raises(ConfigError, match="lacks the columns"):
        show_table(_results(None), ["nope"])
