"""The book's one table style: a small formatted table, the rest behind a toggle and a download link.

:func:`show_table` turns a DataFrame into a :class:`BookTable`: only the columns a point needs,
fixed decimals, readable headers, no truncated cells, and a "random weights" badge when the table
came from random-weight models. The full table (every column, same formatting) sits in a
"Full table" toggle, and a link downloads it as CSV. In the book, wide tables scroll inside their
box (``book/_static/emlib.css``); in Jupyter and Colab the same HTML shows as an ordinary table.

A ``degenerate`` column (True where a run predicted one class on the whole test set), when a table
has one and any row is True, is always shown and flagged, with a line under the table.

This module formats for display only; it computes nothing.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from emlib.errors import ConfigError

__all__ = ["HEADERS", "BookTable", "show_table", "readable_header", "format_value"]

#: Readable headers of the column names the results tables use (others: underscores become spaces).
HEADERS: dict[str, str] = {
    "train_set": "trained on",
    "test_set": "tested on",
    "in_domain": "in-domain",
    "iou_fg": "IoU_fg",
    "dice_fg": "Dice_fg",
    "n_test_slices": "test slices",
    "weights_label": "weights",
    "train_seconds": "training (s)",
    "trainable_params": "trainable parameters",
    "fd": "FD",
    "fd_low": "FD 95% low",
    "fd_high": "FD 95% high",
    "n_a": "Lucchi++ slices",
    "n_b": "VNC slices",
    "protocol_accuracy": "probe accuracy (80/20)",
    "protocol_auroc": "probe AUROC (80/20)",
    "probe_auroc": "probe AUROC (CV)",
    "permuted_auroc": "permuted AUROC",
    "auroc": "AUROC (CV)",
    "auroc_std": "AUROC std",
    "transfer_auroc": "transferred AUROC",
    "fg_fraction": "foreground fraction",
    "n_fg": "foreground tokens",
    "paper_value": "paper",
    "book_value": "this build",
    "gap_closed": "gap closed",
    "in_domain_iou_fg": "in-domain IoU_fg",
    "cross_domain_iou_fg": "cross-domain IoU_fg",
    "iou_fg_lucchi_pp": "IoU_fg Lucchi++",
    "iou_fg_vnc": "IoU_fg VNC",
    "latent_space": "latent space",
    "degenerate": "degenerate",
    "lucchi_pp": "Lucchi++",
    "vnc": "VNC",
}
#: The column that flags runs whose prediction was one class over the whole test set.
FLAG = "degenerate"

Format = str | Callable[[Any], str]


def readable_header(name: Any) -> str:
    """The header shown for column ``name``.

    Examples
    --------
    >>> readable_header("iou_fg"), readable_header("max_cdf_distance")
    ('IoU_fg', 'max cdf distance')
    """
    text = str(name)
    return HEADERS.get(text, text.replace("_", " ") if re.fullmatch(r"[a-z0-9_]+", text) else text)


def format_value(value: Any, decimals: int = 3, fmt: Format | None = None) -> str:
    """One cell as text: fixed decimals for floats, thousands separators for large integers, "–" for missing.

    Examples
    --------
    >>> format_value(58.829885, 2), format_value(442368), format_value(True), format_value(float("nan"))
    ('58.83', '442,368', 'yes', '–')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "–"
    if fmt is not None:
        return fmt(value) if callable(fmt) else fmt.format(value)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        return f"{float(value):.{decimals}f}"
    if isinstance(value, (tuple, list)):
        return " x ".join(str(v) for v in value)
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


class BookTable:
    """A formatted table for the book (built by :func:`show_table`); displays as HTML or text."""

    def __init__(self, full: pd.DataFrame, shown: list[Any], *, decimals: int, formats: Mapping[Any, Format],
                 headers: Mapping[Any, str], index: bool, caption: str, weights_label: str | None,
                 toggle: bool, download: str | None) -> None:
        self.full, self.shown = full, shown
        self.decimals, self.formats, self.headers = decimals, dict(formats), dict(headers)
        self.index, self.caption, self.weights_label = index, caption, weights_label
        self.toggle, self.download = toggle, download

    @property
    def flagged(self) -> int:
        """How many rows are flagged ``degenerate``."""
        return int(self.full[FLAG].fillna(False).astype(bool).sum()) if FLAG in self.full.columns else 0

    def header(self, column: Any) -> str:
        return self.headers.get(column, readable_header(column))

    def text_frame(self, columns: Sequence[Any] | None = None) -> pd.DataFrame:
        """The cells as formatted strings, with readable headers (``columns``: the shown ones)."""
        cols = list(self.shown if columns is None else columns)
        out = pd.DataFrame(index=self.full.index)
        for c in cols:
            fmt = self.formats.get(c)
            out[self.header(c)] = [format_value(v, self.decimals, fmt) for v in self.full[c]]
        return out

    def _html_table(self, columns: Sequence[Any]) -> str:
        frame = self.text_frame(columns)
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        if self.index:
            head = f"<th>{html.escape(readable_header(self.full.index.name or ''))}</th>" + head
        rows = []
        for (label, row), (_, raw) in zip(frame.iterrows(), self.full.iterrows()):
            flagged = FLAG in raw.index and bool(raw[FLAG]) is True
            cells = "".join(
                f'<td class="emlib-flagged">&#9888; {html.escape(v)}</td>' if (c == FLAG and flagged) else
                f"<td>{html.escape(v)}</td>"
                for c, v in zip(columns, row.tolist())
            )
            if self.index:
                cells = f"<th>{html.escape(format_value(label, self.decimals))}</th>" + cells
            rows.append(f'<tr class="emlib-flagged-row">{cells}</tr>' if flagged else f"<tr>{cells}</tr>")
        return (f'<div class="emlib-scroll"><table class="emlib-table">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")

    def _repr_html_(self) -> str:
        parts = ['<div class="emlib-table-box">']
        badge = ""
        if self.weights_label and "random" in str(self.weights_label).lower():
            badge = f' <span class="emlib-badge">{html.escape(str(self.weights_label))}</span>'
        if self.caption or badge:
            parts.append(f'<p class="emlib-caption">{html.escape(self.caption)}{badge}</p>')
        parts.append(self._html_table(self.shown))
        if self.flagged:
            parts.append(f'<p class="emlib-flag-note">&#9888; {self.flagged} of {len(self.full)} rows come from '
                         "runs whose prediction was one class over the whole test set (degenerate).</p>")
        extra = [c for c in self.full.columns if c not in self.shown]
        if self.toggle and extra:
            n_rows, n_cols = self.full.shape
            parts.append(f'<details class="emlib-full"><summary>Full table ({n_rows} rows, {n_cols} columns)'
                         f"</summary>{self._html_table(list(self.full.columns))}</details>")
        if self.download:
            csv = base64.b64encode(self.full.to_csv(index=self.index).encode()).decode("ascii")
            parts.append(f'<p class="emlib-download"><a download="{html.escape(self.download)}" '
                         f'href="data:text/csv;base64,{csv}">Download the full table (CSV)</a></p>')
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        lines = [self.caption + (f" [{self.weights_label}]" if self.weights_label else "")] if self.caption else []
        lines.append(self.text_frame().to_string(index=self.index))
        if self.flagged:
            lines.append(f"! {self.flagged} degenerate rows (one class predicted over the whole test set)")
        return "\n".join(lines)


def show_table(
    df: pd.DataFrame,
    columns: Sequence[Any] | None = None,
    *,
    decimals: int = 3,
    formats: Mapping[Any, Format] | None = None,
    headers: Mapping[Any, str] | None = None,
    index: bool = False,
    caption: str = "",
    weights_label: str | None = None,
    full: bool = True,
    download: bool | str = True,
) -> BookTable:
    """A DataFrame in the book's table style.

    Parameters
    ----------
    df : pandas.DataFrame
    columns : sequence, default=None
        The columns the point needs, in order (None: all). The others are in the "Full table"
        toggle and the CSV. A ``degenerate`` column is added when any row is True.
    decimals : int, default=3
        Decimals of float cells.
    formats : dict, default=None
        Per-column format string (``"{:.1%}"``) or function, for cells that need another format.
    headers : dict, default=None
        Per-column header, over :data:`HEADERS` and the underscore rule.
    index : bool, default=False
        Show the index as the first column.
    caption : str, default=''
    weights_label : str, default=None
        A "random weights" label puts a badge on the table. None takes the table's single
        ``weights_label`` value, when it has one, and then leaves that column out of the shown ones.
    full : bool, default=True
        Offer the full table in a toggle (when columns were left out).
    download : bool or str, default=True
        A link that downloads the full table as CSV (a str is its file name).

    Returns
    -------
    BookTable
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"show_table takes a pandas DataFrame, got {type(df).__name__}")
    shown = list(df.columns) if columns is None else list(columns)
    missing = [c for c in shown if c not in df.columns]
    if missing:
        raise ConfigError(f"df lacks the columns {missing}; it has {list(df.columns)}")
    if weights_label is None and "weights_label" in df.columns and df["weights_label"].nunique() == 1:
        weights_label = str(df["weights_label"].iloc[0])
        shown = [c for c in shown if c != "weights_label"] if len(shown) > 1 else shown
    if FLAG in df.columns and df[FLAG].fillna(False).astype(bool).any() and FLAG not in shown:
        shown.append(FLAG)
    name = download if isinstance(download, str) else (f"{_slug(caption)}.csv" if download else None)
    return BookTable(df, shown, decimals=decimals, formats=formats or {}, headers=headers or {}, index=index,
                     caption=caption, weights_label=weights_label, toggle=full, download=name)
