"""The runs the book's chapters train: one list, for a sharded build and for sizing the book.

A chapter that trains calls :func:`~emlib.chapters.settings.chapter_runs` (a selection of the
profile's grid, :func:`~emlib.chapters.settings.chapter_configs`), :func:`latent_diagnostics` (the
paired LoRA run) or, chapter 8, :func:`~emlib.grid.remedies.run_alignment_grid` (the remedy grid).
:data:`CHAPTER_RUNS` names those selections per chapter and :func:`book_configs` expands them with
the chapter parameters of a build, so ``python -m emlib.book build --shard I/N`` trains the very runs
the chapters will then read back (a run's folder does not depend on where it ran).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emlib.chapters.settings import chapter_configs, chapter_settings
from emlib.config import Profile, RunConfig
from emlib.grid.remedies import alignment_configs

__all__ = ["REMEDY_RUNS", "CHAPTER_RUNS", "book_configs"]

#: The selection that stands for chapter 8's remedy grid (:func:`~emlib.grid.remedies.alignment_configs`).
REMEDY_RUNS = "remedies"
_PAIRED_LORA = {"regimes": ("lora",), "train_sets": ("paired",)}  # what latent_diagnostics trains
#: Chapter name -> the runs it trains: keyword selections of :func:`chapter_configs` ({} is the whole grid),
#: or :data:`REMEDY_RUNS`. Chapters that train nothing (01, 02, the appendix) are not listed.
CHAPTER_RUNS: dict[str, tuple[Mapping[str, Any] | str, ...]] = {
    "03_frozen_backbone": ({"regimes": ("frozen",), "train_sets": ("lucchi_pp", "vnc")},),
    "04_lora": ({"regimes": ("frozen", "lora"), "train_sets": ("lucchi_pp", "vnc")},),
    "05_paired_training": ({},),
    "05b_published_pairing": ({"train_sets": ("paired",), "pairings": ("correct", "published")},),
    "06_latent_diagnostics": (_PAIRED_LORA,),
    "07_results_vs_paper": ({}, _PAIRED_LORA),
    "08_beyond_the_paper": (REMEDY_RUNS,),
}


def _chapter_runs(profile: Profile | str, selection: Mapping[str, Any] | str,
                  params: Mapping[str, Any]) -> list[RunConfig]:
    settings = chapter_settings(profile, backbone=params.get("backbone"), data_dir=params.get("data_dir"),
                                device=params.get("device", "auto"), seed=params.get("seed"),
                                out_dir=params.get("out_dir", "runs"))
    if selection == REMEDY_RUNS:  # as chapter 8 calls run_alignment_grid: the profile's first seed, its regimes
        return [cfg for _, cfg in alignment_configs(settings.profile, regimes=tuple(params.get("regimes", ("frozen", "lora"))),
                                                    backbone=settings.backbone)]
    return chapter_configs(settings, **dict(selection))


def book_configs(profile: Profile | str, chapters: Mapping[str, Mapping[str, Any]]) -> list[RunConfig]:
    """The distinct runs the ``chapters`` train with their parameters, in chapter order (each run once).

    Parameters
    ----------
    profile : Profile or str
        The build's profile (``-p profile``).
    chapters : dict of str to dict
        Chapter name -> the values of its parameters cell in this build (the cell's defaults with the
        build's ``-p`` values on top; ``backbone``, ``seed``, ``device``, ``data_dir`` and chapter 8's
        ``regimes`` decide its runs). Chapters not in :data:`CHAPTER_RUNS` train nothing.

    Returns
    -------
    list of RunConfig
        One per run folder: a run two chapters train (same ``run_id``) is listed once, first come.

    Examples
    --------
    >>> runs = book_configs("smoke", {"03_frozen_backbone": {"device": "cpu"}, "01_data": {}})
    >>> [c.run_id[:-9] for c in runs]
    ['lucchi_pp-frozen-dinov2_vits14-s0', 'vnc-frozen-dinov2_vits14-s0']
    >>> len(book_configs("smoke", {name: {"device": "cpu"} for name in CHAPTER_RUNS}))
    34
    """
    runs: dict[str, RunConfig] = {}
    for name, params in chapters.items():
        for selection in CHAPTER_RUNS.get(name, ()):
            for cfg in _chapter_runs(profile, selection, params):
                runs.setdefault(cfg.run_id, cfg)
    return list(runs.values())
