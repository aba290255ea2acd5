"""What the chapters call: their settings, their data, backbones and the pictures' inputs.

A chapter (``notebooks/<name>.py``) starts with a papermill parameters cell; :func:`chapter_settings`
resolves those parameters against the profile of :mod:`emlib.config` into a
:class:`ChapterSettings`, whose table every page shows, so each page says which profile and which
weights made its outputs. The per-profile knobs (slices shown, the backbone input of token
pictures, the backbones compared side by side, ...) come from the profile, never from
``profile == ...`` checks in the chapters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from emlib.config import BUILD_ENV, DRY_RUN_LABEL, SEED_RANGE, Profile, RunConfig, get_profile, grid_configs
from emlib.data import data_root, fetch_dataset, protocol_size
from emlib.data.layout import ENV_DATA
from emlib.device import resolve_device
from emlib.errors import ConfigError
from emlib.paths import env_path, user_path
from emlib.validation import check_field
from emlib.grid.published import RESULTS_ENV, PublishedResults, published_rows, read_published
from emlib.grid.runner import grid_command, run_configs, run_folder
from emlib.latents import dataset_embeddings, image_set_split, latent_report, load_backbone_for_latents
from emlib.models import RANDOM_WEIGHTS_LABEL, WEIGHTS_ENV, get_backbone_spec
from emlib.viz.display import show_table

__all__ = [
    "ChapterSettings",
    "chapter_settings",
    "ensure_data",
    "limit_cpu_threads",
    "physical_extent_table",
    "token_grid_table",
    "grid_dir",
    "chapter_configs",
    "chapter_command",
    "chapter_runs",
    "latent_diagnostics",
]



# =============================================================================================
# Settings and data
# =============================================================================================


@dataclass(frozen=True)
class ChapterSettings:
    """The papermill parameters of a chapter, resolved against its profile.

    Build it with :func:`chapter_settings`. Displaying it (the last expression of a cell) shows a
    two-column table, so every page says which profile and which weights made its outputs. The
    profile travels as the object: what the chapter shows of it (slices, token pictures, threads)
    is read from it, never copied.

    Attributes
    ----------
    profile : Profile
        ``smoke``, ``quick`` or ``paper``, or a dry run (``quick-dry``, ``paper-dry``).
    backbone : str
        Registered backbone name (the profile's unless the chapter parameter overrides it).
    data_dir : Path or None
        Data root; None means ``$EMLIB_DATA`` or the download cache.
    weights_dir : Path or None
        Folder of pretrained weight files; None means ``$EMLIB_WEIGHTS`` or the hubs.
    device : str
        ``cpu`` or ``cuda`` (``auto`` resolved); the chapter's runs run there.
    seeds : tuple of int
        The seeds of the chapter's runs (the chapter parameter ``seed``, or the profile's seeds).
    out_dir : Path
        Where chapters write run folders.
    live : bool
        True in a live Jupyter/Colab session, False while the book is being built.
    results : PublishedResults or None
        A results folder made elsewhere (:mod:`emlib.grid.published`), whose runs a chapter that
        shows only their tables reads instead of training them (``chapter_runs(..., published=True)``);
        None: every chapter makes its own.
    """

    profile: Profile
    backbone: str
    data_dir: Path | None
    weights_dir: Path | None
    device: str
    seeds: tuple[int, ...]
    out_dir: Path
    live: bool
    results: PublishedResults | None = None

    @property
    def seed(self) -> int:
        """The first of :attr:`seeds`: the seed of the chapter's own random draws (bootstrap, probes)."""
        return self.seeds[0]

    @property
    def pretrained(self) -> bool:
        """False for the smoke profile: random weights, and every figure says so."""
        return self.profile.base.pretrained

    @property
    def dry_run(self) -> bool:
        """True for a dry run (``quick-dry``, ``paper-dry``): pretrained weights through the real code
        path, but numbers that mean nothing; the page's weights label says so."""
        return self.profile.is_dry_run

    @property
    def view_slices(self) -> int | None:
        """Slices read for viewers (None: all); the profile's."""
        return self.profile.view_slices

    @property
    def token_crop(self) -> int | None:
        """Side of the crop fed to backbones in token pictures (smoke), or None; the profile's."""
        return self.profile.token_crop

    @property
    def token_long_edge(self) -> int | None:
        """Long side slices are resized to for token pictures (quick, paper), or None; the profile's."""
        return self.profile.token_long_edge

    @property
    def token_slices(self) -> int:
        """Labelled slices per dataset in the patch-token separability table; the profile's."""
        return self.profile.token_slices

    @property
    def cpu_threads(self) -> int | None:
        """Torch threads for tiny runs on a CPU (the profile's); None keeps torch's default."""
        return self.profile.cpu_threads

    @property
    def weights_label(self) -> str:
        """``random weights``, ``pretrained`` or, for a dry run, ``random values (dry run)``: the words
        figures and tables must carry (a label with "random" in it puts the badge on them)."""
        if self.dry_run:
            return DRY_RUN_LABEL
        return "pretrained" if self.pretrained else RANDOM_WEIGHTS_LABEL

    def table(self) -> pd.DataFrame:
        """The settings as a two-column DataFrame (``setting``, ``value``); a book build shows no local folder."""
        def where(path: Path | None, parameter: str, default: str) -> str:
            if path is None:
                return default
            return str(path) if self.live or not Path(path).is_absolute() else f"a local folder (parameter {parameter})"

        data_default = str(data_root(None)) if self.live else (
            "a local copy ($EMLIB_DATA)" if env_path(ENV_DATA) is not None else "downloaded into the user cache")
        rows = [
            ("profile", f"{self.profile.name}: {self.profile.description}"),
            ("runs", self.profile.summary()),
            ("backbone", self.backbone),
            ("weights", self.weights_label),
            ("data", where(self.data_dir, "data_dir", data_default)),
            ("weights folder", where(self.weights_dir, "weights_dir", "$EMLIB_WEIGHTS or the hubs")),
            ("device", self.device),
            ("seed" if len(self.seeds) == 1 else "seeds", ", ".join(map(str, self.seeds))),
            ("output folder", where(self.out_dir, "out_dir", "runs")),
            ("slices shown", "all" if self.view_slices is None else str(self.view_slices)),
            (
                "backbone input",
                f"{self.token_crop}x{self.token_crop} crop" if self.token_crop else f"long side {self.token_long_edge}",
            ),
        ]
        return pd.DataFrame(rows, columns=["setting", "value"])

    def _repr_html_(self) -> str:
        return show_table(self.table(), caption="What this page was made with", full=False,
                          download=False, weights_label=self.weights_label)._repr_html_()


def chapter_settings(
    profile: Profile | str = "smoke",
    *,
    backbone: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    seed: int | None = None,
    out_dir: str | os.PathLike[str] = "runs",
    results_dir: str | os.PathLike[str] | None = None,
) -> ChapterSettings:
    """Resolve a chapter's papermill parameters against the profile.

    Parameters
    ----------
    profile : Profile or {'smoke', 'quick', 'paper', 'quick-dry', 'paper-dry'}, default='smoke'
        A ``-dry`` name is the profile's dry run (:meth:`emlib.config.Profile.dry_run`).
    backbone : str, default=None
        None takes the profile's backbone.
    data_dir : path, default=None
        None: ``$EMLIB_DATA`` if set, else the download cache (see :func:`ensure_data`). A relative
        folder (given, or in ``$EMLIB_DATA``) is made absolute against the cwd (see :mod:`emlib.paths`).
    weights_dir : path, default=None
        A folder of weight files, made absolute; when given it is exported as ``$EMLIB_WEIGHTS`` for this process,
        which is where :func:`emlib.models.create_backbone` looks.
    device : str, default='auto'
        ``auto`` picks CUDA when available (Colab GPU runtime), else CPU. The chapter's runs run there
        (a run's folder does not depend on its device, so runs made elsewhere are read back).
    seed : int or None, default=None
        The seed of the chapter's runs and of its own random draws; None: the profile's seeds.
    out_dir : path, default='runs'
    results_dir : path, default=None
        A results folder made elsewhere (``emlib results export``; a book build's ``--results``, which
        sets ``$EMLIB_RESULTS``): checked now (:func:`emlib.grid.published.read_published`; it must hold
        the profile's runs), and ``chapter_runs(..., published=True)`` reads the runs found there instead
        of training them. None: ``$EMLIB_RESULTS`` if set.

    Returns
    -------
    ChapterSettings

    Examples
    --------
    >>> s = chapter_settings("smoke", device="cpu", seed=1)
    >>> s.backbone, s.weights_label, s.token_crop, s.seeds
    ('dinov2_vits14', 'random weights', 224, (1,))
    """
    prof = get_profile(profile)
    name = backbone or prof.base.backbone
    get_backbone_spec(name)  # unknown names fail here, with the list of known ones
    if seed is not None:
        check_field("seed", seed, "int", SEED_RANGE)  # 32-bit, as a RunConfig seed
    data_dir = user_path(data_dir) if data_dir is not None else None  # against the cwd where they are given
    weights_dir = user_path(weights_dir) if weights_dir is not None else None
    if weights_dir is not None:
        os.environ[WEIGHTS_ENV] = str(weights_dir)
    return ChapterSettings(
        profile=prof,
        backbone=name,
        data_dir=data_dir,
        weights_dir=weights_dir,
        device=str(resolve_device(device)),
        seeds=prof.seeds if seed is None else (seed,),
        out_dir=Path(out_dir),
        live=not os.environ.get(BUILD_ENV),
        results=_published(results_dir, prof),
    )


def _published(results_dir: str | os.PathLike[str] | None, profile: Profile) -> PublishedResults | None:
    """The results folder given (or in ``$EMLIB_RESULTS``), checked to hold ``profile``'s runs; None when there is none."""
    folder = user_path(results_dir) if results_dir else env_path(RESULTS_ENV)
    if folder is None:
        return None
    results = read_published(folder)
    results.record(profile.name)  # one sentence naming the profiles it holds
    return results


def ensure_data(settings: ChapterSettings, datasets: Sequence[str] = ("lucchi_pp", "vnc")) -> dict[str, Path]:
    """Make sure the datasets are there: a local copy (``$EMLIB_DATA``/``data_dir``) or a download.

    Returns
    -------
    dict of str to Path
        The official-layout folder of each dataset.
    """
    return {name: fetch_dataset(name, root=settings.data_dir, progress=False) for name in datasets}


def limit_cpu_threads(settings: ChapterSettings) -> int:
    """Use the profile's ``cpu_threads`` torch threads when the chapter runs on the CPU (smoke: 1).

    The smoke runs are tiny: more threads only fight over a shared CPU. Profiles without
    ``cpu_threads``, and GPU runs, keep torch's default.

    Returns
    -------
    int
        The number of torch threads now in use.
    """
    if settings.device == "cpu" and settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    return torch.get_num_threads()


# =============================================================================================
# Tables the chapters show
# =============================================================================================


def physical_extent_table(volumes: Mapping[str, Any]) -> pd.DataFrame:
    """Pixel size, section thickness and field of view of each volume, from its voxel size.

    Parameters
    ----------
    volumes : dict of str to emlib.data.Volume

    Returns
    -------
    DataFrame
        Indexed by dataset; columns ``slice (px), pixel (nm), section (nm), field of view (µm), z / xy``.
    """
    rows = []
    for name, vol in volumes.items():
        z, y, x = vol.voxel_size_nm
        h, w = vol.shape[1:]
        rows.append(
            {
                "dataset": name,
                "slice (px)": f"{h} x {w}",
                "pixel (nm)": f"{y:g} x {x:g}",
                "section (nm)": f"{z:g}",
                "field of view (µm)": f"{h * y / 1000:.2f} x {w * x / 1000:.2f}",
                "z / xy": round(z / x, 1),
            }
        )
    return pd.DataFrame(rows).set_index("dataset")


def token_grid_table(
    shapes: Mapping[str, tuple[int, int]], *, patch_sizes: Sequence[int] = (14, 16), long_edge: int = 1022
) -> pd.DataFrame:
    """What the authors' resize does to each slice shape, and the token grid that results.

    Parameters
    ----------
    shapes : dict of str to (H, W)
        Slice shape per dataset.
    patch_sizes : sequence of int, default=(14, 16)
        DINOv2/OpenCLIP-L use 14, DINOv3 and OpenCLIP-B/16 use 16.
    long_edge : int, default=1022

    Returns
    -------
    DataFrame
        Indexed by dataset; columns ``slice, patch, resized, grid, tokens``.
    """
    rows = []
    for name, (h, w) in shapes.items():
        for p in patch_sizes:
            rh, rw = protocol_size(h, w, long_edge=long_edge, multiple=p)
            rows.append(
                {
                    "dataset": name,
                    "slice": f"{h} x {w}",
                    "patch": p,
                    "resized": f"{rh} x {rw}",
                    "grid": f"{rh // p} x {rw // p}",
                    "tokens": (rh // p) * (rw // p),
                }
            )
    return pd.DataFrame(rows).set_index("dataset")


# =============================================================================================
# The chapters' runs are grid runs; the latent diagnostics of chapter 6
# =============================================================================================


def grid_dir(settings: ChapterSettings) -> Path:
    """The grid folder chapters share: ``<out_dir>/<profile>`` (what ``emlib grid --out`` defaults to)."""
    return Path(settings.out_dir) / settings.profile.name


def chapter_configs(
    settings: ChapterSettings, *, regimes: Sequence[str] | None = None, train_sets: Sequence[str] | None = None,
    pairings: Sequence[str] | None = None,
) -> list[RunConfig]:
    """The runs of the profile's grid with the chapter's backbone, seeds and device (plus the U-Net), restricted.

    Exactly :func:`emlib.config.grid_configs` with the chapter's parameters (same run ids, so a chapter
    reuses what ``emlib grid`` or an earlier chapter trained: the device is not part of a run's id).
    """
    return grid_configs(settings.profile, backbone=settings.backbone, regimes=regimes, train_sets=train_sets,
                        seeds=settings.seeds, pairings=pairings, device=settings.device)


def chapter_command(
    settings: ChapterSettings, *, regimes: Sequence[str] | None = None, train_sets: Sequence[str] | None = None,
    remedies: bool = False, pairings: Sequence[str] | None = None,
) -> str:
    """The ``emlib grid`` command that makes (or reads back) the runs a chapter shows."""
    seeds = None if settings.seeds == settings.profile.seeds else settings.seeds
    return grid_command(
        settings.profile, grid_dir(settings), backbone=settings.backbone, regimes=regimes, train_sets=train_sets,
        remedies=remedies, seeds=seeds, pairings=pairings,
    )


def chapter_runs(
    settings: ChapterSettings, *, regimes: Sequence[str] | None = None, train_sets: Sequence[str] | None = None,
    pairings: Sequence[str] | None = None, progress: bool = False, published: bool = False,
) -> pd.DataFrame:
    """Train (or read back) the runs of :func:`chapter_configs` in :func:`grid_dir`; the tidy results table.

    Finished runs (their folder holds ``metrics.json``) are read, not retrained. With ``published=True``, so
    are the runs found in the results folder ``settings.results`` (made elsewhere, without their models:
    for a chapter that shows only their tables, and whose page shows
    :func:`emlib.chapters.published.published_note`); the others are made here.
    """
    configs = chapter_configs(settings, regimes=regimes, train_sets=train_sets, pairings=pairings)
    if not configs:
        raise ConfigError(f"profile {settings.profile.name!r} has no runs with regimes={regimes}, train_sets={train_sets}")
    found, missing = (published_rows(settings.results, configs, settings.profile.name)
                      if published and settings.results is not None else ({}, list(range(len(configs)))))
    made = run_configs([configs[i] for i in missing], grid_dir(settings), root=settings.data_dir, progress=progress,
                       profile=settings.profile.name) if missing else None
    if not found:
        return made
    for i in missing:  # each run's rows, in the order of the configs
        found[i] = made[made.run_id.str.startswith((f"{configs[i].run_id}-", f"{configs[i].legacy_run_id}-"))]
    return pd.concat([found[i] for i in range(len(configs))], ignore_index=True)


def latent_diagnostics(
    settings: ChapterSettings, *, progress: bool = False, n_boot: int = 200, image_set: str = "book"
) -> tuple[pd.DataFrame, dict]:
    """Frozen and paired-LoRA embeddings of both datasets and their diagnostics (chapter 6 in one call).

    Trains the paired LoRA run (of the first of the chapter's seeds) if it is missing, embeds
    Lucchi++ ``test`` and the VNC slices of ``image_set`` (:data:`emlib.latents.IMAGE_SETS`: ``book``,
    stack1's 20 labelled slices; ``authors``, the 3 of the authors' composed test folder) with the
    frozen backbone and with that run's adapter (cached under ``<grid>/embeddings``), and writes the
    table to ``<grid>/latents/domain_report.csv`` (``domain_report_authors.csv`` for ``authors``).

    Returns
    -------
    (table, sets)
        ``latent_report`` rows (frozen, LoRA) and ``{"frozen": EmbeddingSet, "lora": EmbeddingSet}``.
    """
    vnc_split = image_set_split(image_set)
    prof = settings.profile
    chapter_runs(settings, regimes=("lora",), train_sets=("paired",), progress=progress)
    cfg = chapter_configs(settings, regimes=("lora",), train_sets=("paired",))[0]
    out = grid_dir(settings)
    sets = {}
    for key, run in (("frozen", None), ("lora", run_folder(cfg, out, root=settings.data_dir))):
        backbone, adapter = load_backbone_for_latents(
            settings.backbone, pretrained=settings.pretrained, adapter_run=run, pos_interpolation=prof.base.pos_interpolation
        )
        sets[key] = dataset_embeddings(
            backbone, adapter=adapter, root=settings.data_dir, vnc_split=vnc_split, slices=prof.embedding_slices,
            long_edge=prof.embedding_long_edge, device=settings.device, cache_dir=out / "embeddings", progress=progress,
        )
    table = latent_report([sets["frozen"], sets["lora"]], run_dir=out / "latents", n_boot=n_boot, seed=settings.seed,
                          image_set=image_set)
    return table, sets
