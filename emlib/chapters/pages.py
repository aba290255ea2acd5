"""The numbers a chapter's prose quotes, taken from the configuration and recorded for MyST's ``{glue}``.

A chapter never types a number that depends on the profile (epochs, crops, test slices, embedded
slices, embedding width, ...) into its text. It calls ``glue_facts(page_facts(settings))`` once,
and its Markdown cells write ``{glue:text}`epochs``` where the number belongs; the book then
shows the value this page was built with. :func:`glue_facts` stores each value the way
``myst_nb.glue(name, value, display=False)`` does (a hidden output with a ``scrapbook`` record),
without needing MyST-NB in the kernel (Colab).

``tests/book/test_prose_numbers.py`` fails on a profile-dependent number typed into a chapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emlib.models import get_backbone_spec

__all__ = ["GLUE_PREFIX", "page_facts", "glue_facts"]

#: The MIME prefix MyST-NB reads glued values from (``myst_nb.ext.glue.GLUE_PREFIX``).
GLUE_PREFIX = "application/papermill.record/"


def page_facts(settings: Any) -> dict[str, Any]:
    """The profile-dependent numbers and phrases a chapter's prose may quote.

    Parameters
    ----------
    settings : emlib.chapters.settings.ChapterSettings
        Its profile describes itself (:meth:`emlib.config.Profile.facts`, the one description of a
        profile); the page adds what the chapter chose (backbone, weights, seeds).

    Returns
    -------
    dict of str to int or str
        ``profile``, ``weights``, ``backbone``, ``embed_dim``, ``epochs``, ``samples_per_epoch``,
        ``crop`` (pixels, or "whole-slice"), ``training`` (what one run trains on), ``testing``
        (what it is tested on), ``test_slices``, ``embedding_slices``, ``embedding_long_edge``,
        ``token_slices``, ``seeds``.

    Examples
    --------
    >>> from emlib.chapters.settings import chapter_settings
    >>> facts = page_facts(chapter_settings("smoke", device="cpu"))
    >>> facts["epochs"], facts["training"]
    (6, '6 epochs of 16 56-pixel crops from the first 4 training slices of each dataset')
    """
    prof = settings.profile
    facts = prof.facts()
    return {
        "profile": prof.name,
        "weights": settings.weights_label,
        "backbone": settings.backbone,
        "embed_dim": get_backbone_spec(settings.backbone).embed_dim,
        **{key: facts[key] for key in _PAGE_FACTS},
        "seeds": len(settings.seeds),
    }


#: The facts of :meth:`emlib.config.Profile.facts` a page may quote as they are.
_PAGE_FACTS = ("epochs", "samples_per_epoch", "crop", "training", "testing", "test_slices", "embedding_slices",
               "embedding_long_edge", "token_slices")


def glue_facts(facts: Mapping[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """Record each value for ``{glue:text}`name``` in the chapter's Markdown (nothing is shown).

    Returns
    -------
    dict
        The recorded values (``facts`` and ``more``).
    """
    from IPython.display import display  # lazy: only a kernel records glue values

    values = {**(facts or {}), **more}
    for name, value in values.items():
        display({f"{GLUE_PREFIX}text/plain": repr(value)}, raw=True,
                metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
    return values
