"""What a chapter's first cell calls on Colab: the GPU line, then the data and weights, with progress bars.

Every chapter exported for Colab starts with a "Colab only" cell, which the export inserts
(:func:`emlib.book.publish.colab_cell`; the chapter sources carry none): it installs emlib at the
commit the book was built from and then calls :func:`colab_setup`:

1. it says which device ``device="auto"`` will use: the GPU's name, or how to get one on Colab;
2. it downloads both datasets into the user cache with progress bars (nothing when they are there
   or ``$EMLIB_DATA`` points at a local copy);
3. for a profile with pretrained weights it fetches the weights of the chapter's backbones into the
   hubs' caches (:func:`emlib.models.hub.fetch_weights`, the hubs' own progress bars). A backbone
   that cannot be fetched (DINOv3's gated terms not accepted, no network) is one printed line; the
   chapter then leaves it out with the same note, or stops with the one sentence of its error.

It works anywhere (a laptop, a cluster node), not only on Colab; the chapters call it only there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from emlib.config import get_profile
from emlib.data import fetch_dataset, get_source, list_datasets
from emlib.device import resolve_device
from emlib.errors import EmlibError
from emlib.models.hub import fetch_weights

__all__ = ["ColabSession", "gpu_line", "colab_backbones", "colab_setup"]

_GET_A_GPU = "none; on Colab choose Runtime > Change runtime type > GPU, then run the notebook again"


@dataclass
class ColabSession:
    """What :func:`colab_setup` found and fetched.

    Attributes
    ----------
    device : str
        ``cuda`` or ``cpu``: what ``device="auto"`` picks.
    data : dict of str to Path
        Each dataset's official-layout folder.
    weights : dict of str to str
        Each backbone fetched, with where its weights are.
    missing : dict of str to str
        Each backbone whose weights could not be fetched, with the reason (one sentence).
    """

    device: str
    data: dict[str, Path] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def gpu_line() -> str:
    """The line that says which device ``device="auto"`` uses (``GPU: <name>`` or how to get one).

    Examples
    --------
    >>> gpu_line().startswith("GPU: ")
    True
    """
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)} (device='auto' uses it)"
    return f"GPU: {_GET_A_GPU}"


def colab_backbones(profile: str, *, families: bool = False) -> list[str]:
    """The backbones whose weights a chapter on ``profile`` needs ([] for a profile without pretrained weights).

    Parameters
    ----------
    profile : str
    families : bool, default=False
        Also one backbone per family (DINOv2, DINOv3, OpenCLIP), as chapter 2's side-by-side pictures.

    Examples
    --------
    >>> colab_backbones("quick"), colab_backbones("smoke")
    (['dinov2_vits14'], [])
    """
    prof = get_profile(profile)
    if not prof.base.pretrained:
        return []
    names = list(prof.backbones) + (list(prof.family_backbones) if families else [])
    return list(dict.fromkeys(names))


def colab_setup(
    profile: str = "quick",
    *,
    families: bool = False,
    datasets: Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
) -> ColabSession:
    """Prepare a fresh session for a chapter: say which device runs it, fetch the data and the weights.

    Parameters
    ----------
    profile : str, default='quick'
        The profile the chapter will run (the exported Colab notebooks start with ``quick``).
    families : bool, default=False
        Fetch one backbone per family too (chapter 2).
    datasets : sequence of str, default=None
        Datasets to fetch (None: all, ``lucchi_pp`` and ``vnc``).
    data_dir : path, default=None
        Data root (None: ``$EMLIB_DATA`` if set, else the user cache, as the chapters read it).
    progress : bool, default=True
        Progress bars for downloads.
    stream : file, default=None
        Where the lines go (``sys.stdout``).

    Returns
    -------
    ColabSession

    Raises
    ------
    ConfigError
        Unknown profile or dataset (before anything is fetched).
    DataError
        A dataset could not be downloaded (one sentence naming the fix).
    """
    out = stream or sys.stdout
    names = colab_backbones(profile, families=families)
    chosen = [get_source(name).name for name in (list_datasets() if datasets is None else datasets)]
    session = ColabSession(device=str(resolve_device("auto")))
    print(gpu_line(), file=out, flush=True)
    for name in chosen:
        session.data[name] = fetch_dataset(name, root=data_dir, progress=progress)
        print(f"data: {name} in {session.data[name]}", file=out, flush=True)
    for name in names:
        try:
            found = fetch_weights([name], progress=progress)[name]
        except EmlibError as err:
            session.missing[name] = str(err)
            print(f"weights: {name} not fetched: {err}", file=out, flush=True)
            continue
        session.weights[name] = found.where
        print(f"weights: {name} from {found.where}", file=out, flush=True)
    return session
