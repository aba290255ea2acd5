"""The profiles smoke, quick and paper as named :class:`Profile` instances, and the grid they expand to.

Every per-profile knob lives here (no ``profile == ...`` anywhere else): the base
:class:`~emlib.config.RunConfig` of the runs, the grid's axes, per-run overrides (the authors'
batch sizes), and what the chapters show (slices, token pictures, backbones side by side).
:func:`grid_configs` expands a profile into its runs (backbone x regime x train set x seed).

**Dry runs.** ``quick`` and ``paper`` each have a dry run, :meth:`Profile.dry_run`, named
``quick-dry`` and ``paper-dry`` (:data:`DRY_RUN_SUFFIX`; ``get_profile("paper-dry")``, ``emlib grid
--profile paper --dry-run``, ``python -m emlib.book build --profile quick --dry-run``): the same
code paths at a size a CPU runs in minutes. A dry run keeps the profile's regimes, training sets
(paired included), pretrained weights (``pretrained=True``: the very loading code of a real run),
schedule switches (validation split, early stopping, Meta's position interpolation, the disk
feature cache for ``paper``), batch sizes and backbone families, and shrinks only sizes: few
slices, crops or whole slices at a small long side, 2 epochs, one seed, and the smallest member
of each family. It exists for CI on a local test hub (random values in the upstream formats,
:mod:`emlib.testing`), so everything it makes says so: its profile name is in every results row
and run folder path (``runs/paper-dry``), the chapters carry a dry-run banner, and figures the
:data:`DRY_RUN_LABEL` badge.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from emlib.config.run import PAIRINGS, REGIMES, SEED_RANGE, TRAIN_SETS, RunConfig
from emlib.errors import ConfigError
from emlib.validation import check_choice, check_keys

__all__ = ["Profile", "PROFILES", "DRY_RUN_SUFFIX", "DRY_RUN_LABEL", "get_profile", "list_profiles", "grid_configs"]

#: Name of a profile's dry run: the profile's name and this suffix (``quick-dry``, ``paper-dry``).
DRY_RUN_SUFFIX = "-dry"
#: The weights label of a dry run's pages and figures ("random" in it puts the figures' badge on):
#: a dry run loads pretrained weights through the real code path, but from a local test hub whose
#: values are random.
DRY_RUN_LABEL = "random values (dry run)"


@dataclass(frozen=True)
class Profile:
    """A named set of runs: a base :class:`RunConfig` and the axes of the grid.

    Attributes
    ----------
    name : str
        ``smoke``, ``quick`` or ``paper``.
    description : str
        What it is for and where it runs.
    base : RunConfig
        Settings shared by every run.
    backbones, regimes, train_sets : tuple of str
        Grid axes.
    seeds : tuple of int
        Repeats (the authors use 5).
    embedding_slices : int or None
        Slices per dataset embedded for the latent diagnostics (None: all).
    embedding_long_edge : int or None
        Long side slices are resized to before they are embedded (None: 1022, the paper's).
    view_slices : int or None
        Slices the chapters read for viewers (None: all).
    token_crop : int or None
        Side of the crop fed to backbones in token pictures, or None to resize whole slices to
        ``token_long_edge``.
    token_long_edge : int or None
        Long side of the slices in token pictures (when ``token_crop`` is None).
    token_slices : int
        Labelled slices per dataset in the patch-token separability table (chapter 6).
    family_backbones : tuple of str
        One backbone per family (DINOv2, DINOv3, OpenCLIP) for side-by-side pictures.
    cpu_threads : int or None
        Torch threads for the remedy runs on a CPU (tiny runs only fight over cores); None keeps
        torch's default.
    batch_sizes : tuple of (str, int)
        Batch size per training set or backbone family (:meth:`run_overrides`), e.g. the authors'
        2 for paired and OpenCLIP runs where single-dataset runs use 1; a key ``"openclip/vnc"`` needs
        both (the authors' VNC + OpenCLIP runs use 4). The first key that matches wins.
    lora_remedies : tuple of str or None
        The remedies of chapter 8 (:data:`emlib.grid.remedies.REMEDIES`) that also run with LoRA, the others
        frozen only (None: all in both regimes); chapter 8 names the runs left out (a shorter CPU build).
    dry_run_of : str or None
        The profile this one is the dry run of (:meth:`dry_run`), or None for a real profile.
    """

    name: str
    description: str
    base: RunConfig
    backbones: tuple[str, ...]
    regimes: tuple[str, ...]
    train_sets: tuple[str, ...] = TRAIN_SETS
    seeds: tuple[int, ...] = (0,)
    embedding_slices: int | None = None
    embedding_long_edge: int | None = None
    view_slices: int | None = None
    token_crop: int | None = None
    token_long_edge: int | None = None
    token_slices: int = 8
    family_backbones: tuple[str, ...] = ("dinov2_vits14", "dinov3_vits16", "openclip_vitb16")
    cpu_threads: int | None = None
    batch_sizes: tuple[tuple[str, int], ...] = ()
    lora_remedies: tuple[str, ...] | None = None
    dry_run_of: str | None = None

    @property
    def is_dry_run(self) -> bool:
        """True for a dry run (``quick-dry``, ``paper-dry``): its numbers mean nothing."""
        return self.dry_run_of is not None

    def dry_run(self) -> Profile:
        """This profile at a reduced size that keeps every code path (``<name>-dry``).

        Sizes shrink (:data:`_DRY_RUNS` lists every change), everything else stays: regimes,
        training sets, pretrained weights, the schedule's switches, batch sizes, and one backbone
        of each of the profile's families (the smallest). A dry run's dry run is itself.

        Raises
        ------
        ConfigError
            For a profile without a dry run (``smoke``: already small, with random weights).

        Examples
        --------
        >>> dry = get_profile("paper").dry_run()
        >>> dry.name, dry.base.crop, dry.base.long_edge, dry.base.pretrained, dry.backbones
        ('paper-dry', None, 112, True, ('dinov2_vits14_reg', 'dinov3_vits16', 'openclip_vitb16'))
        """
        if self.is_dry_run:
            return self
        if self.name not in _DRY_RUNS:
            raise ConfigError(f"the {self.name!r} profile has no dry run (it is already small); "
                              f"dry runs exist for {sorted(_DRY_RUNS)}")
        change = _DRY_RUNS[self.name]
        return replace(
            self, name=self.name + DRY_RUN_SUFFIX, dry_run_of=self.name,
            description=f"a dry run of {self.name} ({self.description}): {change['why']}",
            base=self.base.replace(**change["base"]), **change["profile"],
        )

    def run_overrides(self, backbone: str, train_set: str) -> dict[str, Any]:
        """Per-run settings on top of ``base``: the batch size of the first key of :attr:`batch_sizes`
        that matches. Each ``/``-separated part of a key is the training set or the start of the
        backbone's name, and every part must match (the authors: 4 for VNC + OpenCLIP, 2 for paired and
        other OpenCLIP runs, 1 otherwise).

        Examples
        --------
        >>> prof = get_profile("paper")
        >>> [prof.run_overrides(b, t) for b, t in [("dinov2_vitl14_reg", "vnc"), ("openclip_vitl14", "lucchi_pp"),
        ...                                        ("openclip_vitl14", "vnc")]]
        [{}, {'batch_size': 2}, {'batch_size': 4}]
        """
        for key, size in self.batch_sizes:
            if all(part == train_set or backbone.startswith(part) for part in key.split("/")):
                return {"batch_size": size}
        return {}

    def facts(self) -> dict[str, Any]:
        """The profile in numbers and phrases: the one description the settings tables and the prose quote.

        Returns
        -------
        dict of str to int or str
            ``weights`` (words), ``backbones``, ``epochs``, ``samples_per_epoch`` (or "all"), ``crop``
            (pixels, or "whole-slice"), ``inputs`` (what a training item is), ``training`` (what one run
            trains on), ``batch``, ``testing`` (what it is tested on), ``test_slices`` (or "every"),
            ``embedding_slices`` (or "all"), ``embedding_long_edge``, ``token_slices``, ``seeds`` (how
            many) and ``where`` (" on the CPU" or "").

        Examples
        --------
        >>> facts = get_profile("smoke").facts()
        >>> facts["epochs"], facts["training"]
        (6, '6 epochs of 16 56-pixel crops from the first 4 training slices of each dataset')
        """
        b = self.base
        weights = "random weights" if not b.pretrained else "pretrained weights"
        if self.is_dry_run:
            weights = "pretrained weights (in CI: random values from a local test hub)"
        if b.crop:
            source = "every training slice" if b.train_slices is None else f"the first {b.train_slices} training slices"
            inputs = f"{b.crop}-pixel crops from {source}" + ("" if b.train_slices is None else " of each dataset")
            per_epoch = f"{b.samples_per_epoch} " if b.samples_per_epoch else ""
            training = f"{b.epochs} epochs of {per_epoch}{inputs}"
        else:
            inputs = f"whole slices resized to a {b.long_edge}-pixel long side"
            training = f"{b.epochs} epochs on {inputs}"
        if b.patience is not None:
            training = (f"up to {b.epochs} epochs on {inputs}, with early stopping (patience {b.patience}, on the loss of "
                        f"the {b.val_fraction:.0%} of training slices held out for validation; the best epoch is kept)")
        testing = "every test slice" if b.eval_slices is None else (
            f"at most {b.eval_slices} evenly spaced test slice{'s' if b.eval_slices != 1 else ''} per dataset")
        if b.eval_region:
            testing += f" (a {b.eval_region}x{b.eval_region}-pixel centre region of each)"
        return {
            "weights": weights,
            "backbones": ", ".join(self.backbones),
            "epochs": b.epochs,
            "samples_per_epoch": b.samples_per_epoch or "all",
            "crop": b.crop or "whole-slice",
            "inputs": inputs,
            "training": training,
            "batch": f"batch {b.batch_size}" + "".join(f", {size} for {key.replace('/', ' + ')}" for key, size in self.batch_sizes),
            "testing": testing,
            "test_slices": "every" if b.eval_slices is None else b.eval_slices,
            "embedding_slices": "all" if self.embedding_slices is None else self.embedding_slices,
            "embedding_long_edge": self.embedding_long_edge or 1022,
            "token_slices": self.token_slices,
            "seeds": len(self.seeds),
            "where": " on the CPU" if b.device == "cpu" else "",
        }

    def summary(self) -> str:
        """What the profile's runs are, in one sentence composed from :meth:`facts` (so the words never disagree).

        Examples
        --------
        >>> get_profile("smoke").summary().split(", ")[:2]
        ['dinov2_vits14 with random weights', '6 epochs of 16 56-pixel crops from the first 4 training slices of each dataset (batch 4)']
        """
        f = self.facts()
        seeds = f"{f['seeds']} seed" + ("s" if f["seeds"] != 1 else "")
        dry = f"dry run of {self.dry_run_of}: " if self.is_dry_run else ""
        return (f"{dry}{f['backbones']} with {f['weights']}, {f['training']} ({f['batch']}), tested on {f['testing']}, "
                f"{seeds}{f['where']}")


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="CI and first contact: checks that every chapter runs; its numbers mean nothing",
        base=RunConfig(
            backbone="dinov2_vits14",
            pretrained=False,
            crop=56,
            train_slices=4,
            samples_per_epoch=16,
            epochs=6,
            batch_size=4,
            lr=3e-3,
            # The linear head: the deconv head's BatchNorm layers, after 24 steps on batches of 4 tiles,
            # give near-constant logits in eval mode, and soft Dice then pushes them above 0.5 or below:
            # one class everywhere in 4 of 4 seeds of LoRA and 1 of 4 of frozen (measured on Lucchi++).
            head="linear",
            eval_window=56,
            eval_slices=2,
            eval_region=112,
            unet_channels=8,
            device="cpu",
        ),
        backbones=("dinov2_vits14",),
        regimes=("frozen", "lora", "unet"),
        embedding_slices=6,
        embedding_long_edge=112,
        view_slices=4,
        token_crop=224,
        token_slices=4,
        cpu_threads=1,
    ),
    "quick": Profile(
        name="quick",
        description="the online edition: a small pretrained backbone on a Colab GPU",
        base=RunConfig(
            backbone="dinov2_vits14",
            pretrained=True,
            crop=224,
            samples_per_epoch=256,
            # 4 epochs, 10 evenly spaced test slices per dataset: the CPU build's cost (benchmarks/README.md)
            epochs=4,
            batch_size=8,
            lr=1e-3,
            head_channels=128,
            eval_window=448,
            eval_slices=10,
            unet_channels=16,
        ),
        backbones=("dinov2_vits14",),
        regimes=("frozen", "lora", "unet"),
        embedding_slices=40,
        embedding_long_edge=518,
        token_long_edge=518,
        # input-level remedies run frozen only (they change the pixels, which the frozen rows measure)
        lora_remedies=("balanced sampling", "feature norm (AdaBN)", "FiLM per domain", "CORAL", "heads per domain",
                       "fg reweighting"),
    ),
    "paper": Profile(
        name="paper",
        description="the authors' protocol on a large GPU",
        base=RunConfig(
            # DINOv2 with registers, as the authors' backbone factory loads it (torch.hub dinov2_vitl14_reg); the
            # plain model is the named alternative: `emlib grid --profile paper --backbone dinov2_vitl14`
            backbone="dinov2_vitl14_reg",
            pretrained=True,
            pos_interpolation="meta",  # the authors load DINOv2 from Meta's torch hub
            loss="monai_dice",  # the authors' trainer: MONAI's DiceLoss, per image and class (emlib.losses)
            crop=None,
            long_edge=1022,
            augment=False,
            epochs=1000,  # at most: early stopping on the validation loss (patience 20) ends runs sooner
            batch_size=1,  # 4 for VNC + OpenCLIP, 2 for paired and other OpenCLIP runs (batch_sizes below)
            val_fraction=0.1,
            val_seed=42,
            patience=20,
            lr=5e-5,
            head_channels=512,
            amp=False,
            cache="disk",
        ),
        backbones=("dinov2_vitl14_reg", "dinov3_vitl16", "openclip_vitl14"),
        regimes=("frozen", "lora"),
        seeds=(0, 1, 2, 3, 4),
        # configs/cluster/EM/droso_openclip_vitl14_cluster.yaml: 4; lucchi/paired OpenCLIP and paired DINO: 2 (defaults.yaml)
        batch_sizes=(("openclip/vnc", 4), ("paired", 2), ("openclip", 2)),
        embedding_long_edge=1022,
        token_long_edge=1022,
        family_backbones=("dinov2_vitl14_reg", "dinov3_vitl16", "openclip_vitl14"),
    ),
}


#: What a dry run changes (:meth:`Profile.dry_run`): sizes only. ``base`` goes to the RunConfig,
#: ``profile`` to the Profile; every other setting is the real profile's. ``why`` ends the description
#: (words only: the numbers are in the config, and :meth:`Profile.summary` says them). Chapter 6 needs
#: at least 6 embedded slices per dataset (5-fold probes); 2 epochs let early stopping pick an epoch.
_DRY_RUNS: dict[str, dict[str, Any]] = {
    "quick": {
        "why": "the same runs on small crops, with few epochs and test slices",
        "base": {"crop": 112, "train_slices": 2, "samples_per_epoch": 4, "epochs": 2, "batch_size": 2,
                 "eval_window": 112, "eval_slices": 1, "eval_region": 112, "unet_channels": 8},
        "profile": {"embedding_slices": 6, "embedding_long_edge": 112, "token_long_edge": 112, "token_slices": 2,
                    "view_slices": 2},
    },
    "paper": {
        "why": "whole slices at a small size, the smallest backbone of each family, few epochs, one seed",
        "base": {"backbone": "dinov2_vits14_reg", "long_edge": 112, "train_slices": 3, "epochs": 2, "eval_slices": 1,
                 "head_channels": 64},
        "profile": {"backbones": ("dinov2_vits14_reg", "dinov3_vits16", "openclip_vitb16"), "seeds": (0,),
                    "family_backbones": ("dinov2_vits14_reg", "dinov3_vits16", "openclip_vitb16"),
                    "embedding_slices": 6, "embedding_long_edge": 112, "token_long_edge": 112, "token_slices": 2,
                    "view_slices": 2},
    },
}


def list_profiles(*, dry_runs: bool = False) -> list[str]:
    """Names of the profiles; with ``dry_runs=True`` also their dry runs (``quick-dry``, ``paper-dry``).

    Examples
    --------
    >>> list_profiles(dry_runs=True)
    ['smoke', 'quick', 'paper', 'quick-dry', 'paper-dry']
    """
    return list(PROFILES) + ([name + DRY_RUN_SUFFIX for name in _DRY_RUNS] if dry_runs else [])


def get_profile(profile: Profile | str, *, dry_run: bool = False) -> Profile:
    """The profile called ``profile`` (``quick-dry`` names the dry run of ``quick``), or its dry run.

    A :class:`Profile` is returned as it is (its dry run with ``dry_run=True``), so functions that
    take a profile accept the object or its name and resolve it once. Unknown names raise
    ConfigError listing the known ones; ``dry_run=True`` on a profile without a dry run (smoke)
    raises ConfigError too.

    Examples
    --------
    >>> dry = get_profile("paper-dry")
    >>> get_profile(dry) is dry, get_profile("paper", dry_run=True) == dry
    (True, True)
    """
    if isinstance(profile, Profile):
        return profile.dry_run() if dry_run else profile
    name = profile
    base = name[: -len(DRY_RUN_SUFFIX)] if isinstance(name, str) and name.endswith(DRY_RUN_SUFFIX) else name
    if base not in PROFILES or (base != name and base not in _DRY_RUNS):
        raise ConfigError(f"unknown profile {name!r}; choose one of {list_profiles(dry_runs=True)}")
    prof = PROFILES[base]
    return prof.dry_run() if dry_run or base != name else prof


def grid_configs(
    profile: Profile | str,
    *,
    backbone: str | None = None,
    regimes: Sequence[str] | None = None,
    train_sets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    pairings: Sequence[str] | None = None,
    weights: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None = None,
    **overrides: Any,
) -> list[RunConfig]:
    """Expand a profile into its runs (backbone x regime x train set x seed), optionally a selection.

    The U-Net regime does not depend on the backbone, so it appears once per train set and seed.

    Parameters
    ----------
    profile : Profile or str
    backbone : str, default=None
        Train only this backbone (the U-Net runs stay); it may lie outside the profile's list. This
        is the one route by which a chapter's backbone reaches its runs.
    regimes, train_sets : sequence of str, default=None
        Keep only these (None: all of the profile's).
    seeds : sequence of int, default=None
        Run these seeds (None: the profile's); like ``backbone`` they may lie outside the profile's.
    pairings : sequence of {'correct', 'published'}, default=None
        The pairings each paired run is trained on (None: ``('correct',)``); ``published`` is the
        authors' composed paired set (:mod:`emlib.data.pairing`). Single-dataset runs are paired correctly.
    weights : path or dict of str to path, default=None
        Local weights files: ``{backbone: file}``, each put on its backbone's runs (the paper's three
        backbones need three), or one file when the selected runs use one backbone. The U-Net runs
        have no backbone and take none. None: ``$EMLIB_WEIGHTS`` and the hubs.
    **overrides
        Applied to every run (e.g. ``pretrained=False`` or ``device="cuda"``); None values are dropped.
        ``seed=N`` is the same as ``seeds=[N]``; ``regime``, ``train_set`` and ``pairing`` are selected
        with ``regimes=``, ``train_sets=`` and ``pairings=``.

    Examples
    --------
    >>> [c.run_id[:-9] for c in grid_configs("smoke", regimes=["lora"])]
    ['lucchi_pp-lora-dinov2_vits14-s0', 'vnc-lora-dinov2_vits14-s0', 'paired-lora-dinov2_vits14-s0']
    """
    prof = get_profile(profile)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    seeds = _check_selection(prof, regimes, train_sets, seeds, overrides)
    for value in pairings or ():
        check_choice("pairing", value, PAIRINGS)
    pairings = tuple(dict.fromkeys(pairings or ("correct",)))
    backbones = prof.backbones if backbone is None else (backbone,)
    runs: list[RunConfig] = []
    seen: set[str] = set()
    for seed in seeds:
        for train_set in prof.train_sets:
            if train_sets is not None and train_set not in train_sets:
                continue
            for regime in prof.regimes:
                if regimes is not None and regime not in regimes:
                    continue
                for name in prof.backbones[:1] if regime == "unet" else backbones:
                    for pairing in pairings if train_set == "paired" else ("correct",):
                        run = {"backbone": name, "regime": regime, "train_set": train_set, "seed": seed, "pairing": pairing}
                        run.update(prof.run_overrides(name, train_set))
                        cfg = prof.base.replace(**{**run, **overrides})
                        if cfg.run_id not in seen:
                            seen.add(cfg.run_id)
                            runs.append(cfg)
    return _route_weights(runs, weights)


def _check_selection(
    prof: Profile, regimes: Sequence[str] | None, train_sets: Sequence[str] | None, seeds: Sequence[int] | None,
    overrides: dict[str, Any],
) -> tuple[int, ...]:
    """Check a selection of :func:`grid_configs` (one sentence each); the seeds to run (``seed=`` popped from ``overrides``)."""
    for name, chosen, allowed in (("regime", regimes, REGIMES), ("train_set", train_sets, TRAIN_SETS)):
        for value in chosen or ():
            check_choice(name, value, allowed)
    for axis in ("regime", "train_set", "pairing"):
        if axis in overrides:
            raise ConfigError(f"{axis} is an axis of the grid; select it with {axis}s=[{overrides[axis]!r}]")
    check_keys(overrides, RunConfig)
    if "seed" in overrides:
        if seeds is not None:
            raise ConfigError("seed and seeds both select seeds; pass only seeds=[...]")
        seeds = (overrides.pop("seed"),)
    for seed in seeds or ():
        if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE.accepts(seed):
            seeds_are = f"seeds are integers {SEED_RANGE.describe()} (32-bit)"
            raise ConfigError(f"seed {seed!r} is not allowed; {seeds_are}, e.g. seeds=[0]",
                              cli_message=f"--seed {seed} is not allowed; {seeds_are}, e.g. --seed 0")
    return prof.seeds if seeds is None else tuple(dict.fromkeys(seeds))


def _route_weights(
    runs: list[RunConfig], weights: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None,
) -> list[RunConfig]:
    """Each backbone's weights file on its runs (:func:`grid_configs`); one sentence, in Python and in CLI words,
    for a file that does not say which backbone it is for or one naming a backbone no run uses."""
    if weights is None:
        return runs
    used = list(dict.fromkeys(c.backbone for c in runs if c.regime != "unet"))
    if not isinstance(weights, Mapping):
        if len(used) != 1:
            runs_use = ", ".join(used) or "none"
            example = used[0] if used else "NAME"
            raise ConfigError(
                f"weights={str(weights)!r} does not say which backbone it is for and the runs use {runs_use}; "
                f"pass one file per backbone, e.g. weights={{{example!r}: {str(weights)!r}}}",
                cli_message=f"--weights {weights} does not say which backbone it is for and the selected runs use "
                            f"{runs_use}; give one --weights NAME=FILE per backbone, e.g. --weights {example}={weights}",
            )
        weights = {used[0]: weights}
    for name in weights:
        if name not in used:
            raise ConfigError(
                f"weights names {name!r}, a backbone no selected run uses ({', '.join(used)}); drop it, or select "
                f"that backbone (backbone={name!r})",
                cli_message=f"--weights {name}=... names a backbone no selected run uses ({', '.join(used)}); drop it, "
                            f"or select that backbone (--backbone {name})",
            )
    return [c.replace(weights=str(weights[c.backbone])) if c.regime != "unet" and c.backbone in weights else c
            for c in runs]
