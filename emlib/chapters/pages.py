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

from emlib.config import get_profile
from emlib.models import get_backbone_spec

__all__ = ["GLUE_PREFIX", "page_facts", "glue_facts"]

#: The MIME prefix MyST-NB reads glued values from (``myst_nb.ext.glue.GLUE_PREFIX``).
GLUE_PREFIX = "application/papermill.record/"


def page_facts(settings: Any) -> dict[str, Any]:
    """The profile-dependent numbers and phrases a chapter's prose may quote.

    Parameters
    ----------
    settings : emlib.chapters.settings.ChapterSettings

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
    (6, '6 epochs of 16 56-pixel crops from 4 training slices per dataset')
    """
    prof = get_profile(settings.profile)
    b = prof.base
    slices = "every training slice" if b.train_slices is None else f"{b.train_slices} training slices per dataset"
    if b.crop:
        per_epoch = f"{b.samples_per_epoch} " if b.samples_per_epoch else ""
        training = f"{b.epochs} epochs of {per_epoch}{b.crop}-pixel crops from {slices}"
    else:
        training = f"{b.epochs} epochs on whole slices resized to a {b.long_edge}-pixel long side"
    test_slices = "every" if b.eval_slices is None else b.eval_slices
    testing = "every test slice" if b.eval_slices is None else f"{b.eval_slices} test slices per dataset"
    if b.eval_region:
        testing += f", a {b.eval_region}-pixel centre square of each"
    return {
        "profile": prof.name,
        "weights": settings.weights_label,
        "backbone": settings.backbone,
        "embed_dim": get_backbone_spec(settings.backbone).embed_dim,
        "epochs": b.epochs,
        "samples_per_epoch": b.samples_per_epoch or "all",
        "crop": b.crop or "whole-slice",
        "training": training,
        "testing": testing,
        "test_slices": test_slices,
        "embedding_slices": "all" if prof.embedding_slices is None else prof.embedding_slices,
        "embedding_long_edge": prof.embedding_long_edge or 1022,
        "token_slices": prof.token_slices,
        "seeds": len(prof.seeds),
    }


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
