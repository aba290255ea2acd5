"""What a chapter calls when its runs may come from a results folder made elsewhere (:mod:`emlib.grid.published`).

:func:`~emlib.chapters.settings.chapter_runs` already reads the runs found in ``settings.results``;
this module adds what a page needs besides: the latent diagnostics table (:func:`latent_table`, the
embedding summary of chapter 6, read from the folder when it holds one for the chapter's backbone),
and the note that says where the page's numbers come from (:func:`published_note`): commit, weights
labels and machine, and a warning for each mismatch with this book (never silent).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from emlib.chapters.settings import ChapterSettings, latent_diagnostics
from emlib.grid.published import PublishedNote, provenance_note

__all__ = ["LATENT_TABLES", "latent_table", "published_note"]

#: The latent diagnostics table of each image set, in a grid folder (what :func:`emlib.latents.latent_report` writes).
LATENT_TABLES = {"book": "latents/domain_report.csv", "authors": "latents/domain_report_authors.csv"}


def latent_table(settings: ChapterSettings, *, image_set: str = "book", **kwargs: Any) -> pd.DataFrame:
    """The latent diagnostics table of :func:`~emlib.chapters.settings.latent_diagnostics` (frozen and paired LoRA rows).

    Read from ``settings.results`` when the folder holds it for the chapter's backbone (no weights or
    embeddings needed); otherwise computed here (``kwargs`` go to ``latent_diagnostics``).

    Returns
    -------
    DataFrame
        One row per embedding set (``adapter``, ``fd``, ``fd_low``, ``fd_high``, ``protocol_auroc``, ...).
    """
    if settings.results is not None and settings.profile.name in settings.results.profiles:
        table = settings.results.table(settings.profile.name, LATENT_TABLES.get(image_set, f"latents/domain_report_{image_set}.csv"))
        if table is not None and "backbone" in table and set(table["backbone"].astype(str)) == {settings.backbone}:
            return table
    return latent_diagnostics(settings, image_set=image_set, **kwargs)[0]


def published_note(settings: ChapterSettings, *, commit: str | None = None) -> PublishedNote | None:
    """The note a page shows above numbers read from ``settings.results``; None when it reads none.

    It names the folder, the commits, machines and weights labels of the runs, and warns (a visible
    admonition, class ``emlib-published-mismatch``) when the commit is not this book's (``commit``;
    None: this checkout's) or the data or weights here are not those the runs were made with.
    """
    if settings.results is None or settings.profile.name not in settings.results.profiles:
        return None
    return provenance_note(settings.results, settings.profile.name, commit=commit, root=settings.data_dir)
