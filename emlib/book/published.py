"""``python -m emlib.book build --results DIR``: chapters that read runs made elsewhere instead of training them.

The paper profile's runs are made once on a GPU cluster and exported there as a results folder
(``emlib results export runs/paper --into published``, :mod:`emlib.grid.published`: tables and
records, no weights). A build given that folder

1. checks it before any work, in seconds (:func:`check_results`): every file its manifest lists,
   with its SHA-256, nothing else, nothing but JSON and CSV, and runs of the build's profile;
2. hands it to every chapter's kernel as ``$EMLIB_RESULTS`` (:func:`results_environment`; a build
   without ``--results`` clears the variable, so a folder is never read unasked), where
   :func:`~emlib.chapters.settings.chapter_settings` reads it: the chapter's runs found there are
   read, not trained, and its page shows :func:`~emlib.chapters.published.published_note`
   (commit, weights labels, machine, and a warning for each mismatch with this book);
3. needs no weights for a chapter that trains only through calls the folder serves
   (:func:`served_chapters`: ``chapter_runs(..., published=True)`` and ``latent_table``, every run of
   the chapter's grid and its latent table being in the folder). A chapter that loads a trained model
   (chapters 3-6) never reads the folder: it makes its own runs, with its weights.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emlib.book.toc import SOURCE_DIR
from emlib.chapters.published import LATENT_TABLES
from emlib.config import PAIRINGS, Profile, grid_configs
from emlib.grid.published import RESULTS_ENV, PublishedResults, read_published

__all__ = ["SERVED_CALLS", "NEEDS_MODELS", "check_results", "served_chapters", "results_environment"]

#: The calls of a chapter that a results folder answers (its runs' rows, its latent table) without weights.
SERVED_CALLS = re.compile(r"\b(chapter_runs|latent_table)\(")
#: Calls that read a run's trained model or build a backbone: a results folder holds neither, so a chapter making
#: one is never served by it (it needs the weights, and trains what it loads).
NEEDS_MODELS = re.compile(r"\b(load_trained|run_folder|run_one|run_configs|run_grid|fit|build_model|evaluate_both|"
                          r"evaluate|run_embeddings|dataset_embeddings|dataset_tokens|load_backbones|backbone_view|"
                          r"load_backbone_for_latents|create_backbone)\(")


def check_results(results: str | os.PathLike[str], profile: Profile) -> PublishedResults:
    """The checked results folder of ``--results``; DataError/ConfigError (one sentence) before any work.

    It must be a folder ``emlib results export`` wrote, unchanged since (:func:`~emlib.grid.published.read_published`),
    holding runs of ``profile`` (the build's ``--profile``, ``--dry-run`` included).
    """
    published = read_published(results)
    published.record(profile.name)
    return published


def served_chapters(
    root: Path, chapters: Sequence[str], published: PublishedResults, profile: Profile,
    parameters: Mapping[str, Any] | None, *, needs: re.Pattern[str],
) -> list[str]:
    """The chapters that need no weights with ``published``: each call matching ``needs`` is one it serves.

    ``needs`` is the build's pattern of calls that train or embed (:data:`emlib.book.build._NEEDS_WEIGHTS`).
    A chapter is served when its source calls nothing else of it nor of :data:`NEEDS_MODELS` (a trained
    model, a backbone), passes ``published=True`` to each ``chapter_runs``, and the folder holds every run of the
    profile's grid with the chapter's backbone and seeds (``-p backbone``, ``-p seed``; every pairing when
    the chapter names ``pairings``), and the latent table of that backbone where the chapter reads it.
    """
    params = dict(parameters or {})
    backbone = params.get("backbone") or profile.base.backbone
    seeds = None if params.get("seed") is None else (int(params["seed"]),)

    def held(pairings: Sequence[str] | None) -> bool:
        configs = grid_configs(profile, backbone=backbone, seeds=seeds, pairings=pairings)
        return all(published.run_dir(cfg, profile.name) is not None for cfg in configs)

    latents = published.table(profile.name, LATENT_TABLES["book"])
    has_latents = latents is not None and set(latents.get("backbone", [])) == {backbone}
    served = []
    for name in chapters:
        text = (root / SOURCE_DIR / f"{name}.py").read_text()
        calls = set(SERVED_CALLS.findall(text))
        if not calls or needs.search(SERVED_CALLS.sub("(", text)) or NEEDS_MODELS.search(text) or not _asks(text):
            continue  # nothing it serves, another call that needs weights or a model, or runs it makes itself
        pairings = PAIRINGS if "pairings" in text else None  # a chapter that names pairings may ask for every one
        if held(pairings) and ("latent_table" not in calls or has_latents):
            served.append(name)
    return served


def _asks(source: str) -> bool:
    """Whether every ``chapter_runs`` call of a chapter's source passes ``published=True`` (reads the folder)."""
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and getattr(node.func, "id", getattr(node.func, "attr", None)) == "chapter_runs"]
    return all(any(k.arg == "published" and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in call.keywords) for call in calls)


@contextmanager
def results_environment(published: PublishedResults | None) -> Iterator[None]:
    """``$EMLIB_RESULTS`` for the chapters' kernels: the folder, or unset without one; restored after."""
    saved = os.environ.get(RESULTS_ENV)
    if published is None:
        os.environ.pop(RESULTS_ENV, None)
    else:
        os.environ[RESULTS_ENV] = str(published.root)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = saved
