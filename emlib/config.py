"""Configuration as frozen dataclasses, and the three profiles (smoke, quick, paper) as named instances.

A :class:`RunConfig` describes one training run completely; :func:`grid_configs` expands a
:class:`Profile` into the experiment grid (backbone x regime x train set). Choices the authors'
protocol leaves open are written down here, next to the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from emlib.errors import ConfigError

__all__ = [
    "BUILD_ENV",
    "RunConfig",
    "LoraSettings",
    "LORA_TARGETS",
    "Profile",
    "PROFILES",
    "TRAIN_SETS",
    "REGIMES",
    "INPUT_ALIGNMENTS",
    "ALIGNMENT_FIELDS",
    "get_profile",
    "list_profiles",
    "grid_configs",
]

#: Set (to "1") in the kernel's environment while the book is built (by :mod:`emlib.book`); chapters
#: then skip live widgets.
BUILD_ENV = "EMLIB_BOOK_BUILD"

#: Training sets: one dataset alone, or both together ("paired").
TRAIN_SETS: tuple[str, ...] = ("lucchi_pp", "vnc", "paired")
#: Regimes: frozen backbone + head, LoRA on the backbone + head, and a U-Net trained from scratch.
REGIMES: tuple[str, ...] = ("frozen", "lora", "unet")
#: Test sets every model is evaluated on (the cross-dataset matrix).
TEST_SETS: tuple[str, ...] = ("lucchi_pp", "vnc")
#: Input-level remedies of :mod:`emlib.data.alignment` (``RunConfig.input_alignment``; None: none).
INPUT_ALIGNMENTS: tuple[str, ...] = ("standardise", "histmatch", "clahe", "resample")


#: Linear maps of a transformer block that can carry a LoRA adapter (the paper uses the first two).
LORA_TARGETS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (the authors' cluster configs: r=16, alpha=32, dropout 0).

    Parameters
    ----------
    rank : int, default=16
        Rank ``r`` of the update ``B A`` (A: ``r x in``, B: ``out x r``).
    alpha : float, default=32
        Scale numerator; the update is multiplied by ``alpha / rank``.
    dropout : float, default=0.0
        Dropout on the LoRA input, in [0, 1).
    targets : tuple of str, default=('attn.qkv', 'attn.proj')
        Which linear maps of each block get an adapter, from ``LORA_TARGETS``.
    """

    rank: int = 16
    alpha: float = 32
    dropout: float = 0.0
    targets: tuple[str, ...] = ("attn.qkv", "attn.proj")

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be a positive integer, got {self.rank!r}.")
        if not self.alpha > 0:
            raise ConfigError(f"LoRA alpha must be positive, got {self.alpha!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}.")
        targets = tuple(self.targets)
        object.__setattr__(self, "targets", targets)
        bad = [t for t in targets if t not in LORA_TARGETS]
        if not targets or bad or len(set(targets)) != len(targets):
            raise ConfigError(
                f"LoRA targets {targets!r} are not allowed; give distinct names from {LORA_TARGETS}."
            )

    @property
    def scale(self) -> float:
        """``alpha / rank``, the factor on the low-rank update."""
        return self.alpha / self.rank


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run and its evaluation.

    Sizes are in pixels, learning rates per step. ``crop=None`` means whole slices resized as the
    authors do (long side ``long_edge``, sides floored to the patch size, no augmentation).
    """

    backbone: str = "dinov2_vits14"
    pretrained: bool = True
    weights: str | None = None
    regime: str = "frozen"
    train_set: str = "lucchi_pp"
    balance: bool = False
    head: str = "deconv"
    head_channels: int = 512
    crop: int | None = 224
    long_edge: int | None = None
    augment: bool = False
    train_slices: int | None = None
    samples_per_epoch: int | None = None
    epochs: int = 20
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 1e-4
    loss: str = "dice"
    grad_clip: float = 1.0
    lora: LoraSettings = field(default_factory=LoraSettings)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    cache: str = "memory"
    eval_window: int | None = None
    eval_slices: int | None = None
    eval_region: int | None = None
    unet_channels: int = 16
    # Beyond the paper (emlib.plugins): remedies for paired training. At their defaults they are
    # left out of to_dict(), so configs and run digests from before they existed are unchanged.
    input_alignment: str | None = None
    alignment_reference: str = "lucchi_pp"
    feature_norm: bool = False
    film: bool = False
    coral_weight: float = 0.0
    heads_per_domain: bool = False
    fg_reweight: bool = False

    def __post_init__(self) -> None:
        _check_choice("regime", self.regime, REGIMES)
        _check_choice("train_set", self.train_set, TRAIN_SETS)
        _check_choice("loss", self.loss, ("dice", "ce", "ce_dice"))
        _check_choice("cache", self.cache, ("memory", "disk", "none"))
        _check_choice("head", self.head, ("deconv", "linear"))
        if self.crop is None and self.long_edge is None:
            raise ConfigError("crop=None means whole resized slices, so set long_edge (the authors use 1022)")
        for name in ("epochs", "batch_size", "head_channels"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive")
        self._check_alignment()

    def _check_alignment(self) -> None:
        if self.input_alignment is not None:
            _check_choice("input_alignment", self.input_alignment, INPUT_ALIGNMENTS)
        _check_choice("alignment_reference", self.alignment_reference, TEST_SETS)
        if self.coral_weight < 0:
            raise ConfigError(f"coral_weight={self.coral_weight} must be >= 0")
        feature_options = [n for n in ("feature_norm", "film", "heads_per_domain") if getattr(self, n)]
        if self.coral_weight > 0:
            feature_options.append("coral_weight")
        if self.regime == "unet" and feature_options:
            raise ConfigError(f"{feature_options} act on backbone features; the unet regime has none, use frozen or lora")
        paired_only = [n for n in ("film", "heads_per_domain", "fg_reweight") if getattr(self, n)]
        if self.coral_weight > 0:
            paired_only.append("coral_weight")
        if paired_only and self.train_set != "paired":
            raise ConfigError(f"{paired_only} need both datasets in training; set train_set='paired'")
        if self.coral_weight > 0 and self.heads_per_domain:
            raise ConfigError("coral_weight aligns the features of one shared head; it cannot be combined with heads_per_domain")

    @property
    def domain_aware(self) -> bool:
        """True when the model needs each item's domain (feature norm, FiLM or per-domain heads)."""
        return self.feature_norm or self.film or self.heads_per_domain

    @property
    def weights_label(self) -> str:
        """``random weights`` for random-init backbones, else where the weights come from."""
        if self.regime == "unet":
            return "trained from scratch"
        if not self.pretrained:
            return "random weights"
        return f"pretrained ({self.weights})" if self.weights else "pretrained"

    @property
    def run_id(self) -> str:
        """Readable, unique folder name: ``<train_set>-<regime>-<backbone>-s<seed>-<hash>``."""
        model = "unet" if self.regime == "unet" else self.backbone
        return f"{self.train_set}-{self.regime}-{model}-s{self.seed}-{self.digest()[:8]}"

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of this config (identifies a run)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (nested dataclasses become dicts, tuples lists).

        The alignment options (:data:`ALIGNMENT_FIELDS`) appear only when they differ from their
        defaults, so older configs keep their digest.
        """
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for name in ALIGNMENT_FIELDS:
            if data[name] == _FIELD_DEFAULTS[name]:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown RunConfig keys {unknown}; allowed keys are {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("lora"), dict):
            lora = dict(data["lora"])
            lora["targets"] = tuple(lora.get("targets", LoraSettings.targets))
            data["lora"] = LoraSettings(**lora)
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


#: RunConfig fields of the remedies (:mod:`emlib.plugins`); omitted from ``to_dict`` at their defaults.
ALIGNMENT_FIELDS: tuple[str, ...] = (
    "input_alignment", "alignment_reference", "feature_norm", "film", "coral_weight", "heads_per_domain", "fg_reweight",
)
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


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


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description=(
            "CI and first contact: random-weight ViT-S/14, 56-pixel tiles, 4 training slices, 6 epochs of 16 tiles, "
            "evaluated on a 112x112 centre region of 2 test slices; minutes on 2 CPU cores, numbers meaningless"
        ),
        base=RunConfig(
            backbone="dinov2_vits14",
            pretrained=False,
            crop=56,
            train_slices=4,
            samples_per_epoch=16,
            epochs=6,
            batch_size=4,
            lr=3e-3,
            head_channels=32,
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
        description=(
            "The online edition: pretrained DINOv2 ViT-S/14, 224-pixel crops, every training slice, "
            "evaluated on every 8th Lucchi++ test slice and all 3 VNC test slices at full size; "
            "under 10 minutes on a Colab T4"
        ),
        base=RunConfig(
            backbone="dinov2_vits14",
            pretrained=True,
            crop=224,
            samples_per_epoch=256,
            epochs=8,
            batch_size=8,
            lr=1e-3,
            head_channels=128,
            eval_window=448,
            eval_slices=None,
            unet_channels=16,
        ),
        backbones=("dinov2_vits14",),
        regimes=("frozen", "lora", "unet"),
        embedding_slices=40,
        embedding_long_edge=518,
        token_long_edge=518,
    ),
    "paper": Profile(
        name="paper",
        description=(
            "The authors' protocol on a GPU: DINOv2 ViT-L/14 (and other backbones), whole slices resized to a "
            "1022-pixel long side, no augmentation, SegHeadDeconv(512), Dice loss, AdamW 5e-5, batch 2, "
            "LoRA r=16 alpha=32 on qkv+proj, 5 seeds"
        ),
        base=RunConfig(
            backbone="dinov2_vitl14",
            pretrained=True,
            crop=None,
            long_edge=1022,
            augment=False,
            epochs=100,
            batch_size=2,
            lr=5e-5,
            head_channels=512,
            amp=False,
            cache="disk",
        ),
        backbones=("dinov2_vitl14", "dinov3_vitl16", "openclip_vitl14"),
        regimes=("frozen", "lora"),
        seeds=(0, 1, 2, 3, 4),
        embedding_long_edge=1022,
        token_long_edge=1022,
        family_backbones=("dinov2_vitl14", "dinov3_vitl16", "openclip_vitl14"),
    ),
}


def list_profiles() -> list[str]:
    """Names of the profiles."""
    return list(PROFILES)


def get_profile(name: str) -> Profile:
    """The profile called ``name``; unknown names raise ConfigError listing the known ones."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {list_profiles()}")
    return PROFILES[name]


def grid_configs(
    profile: Profile | str,
    *,
    backbone: str | None = None,
    regimes: Sequence[str] | None = None,
    train_sets: Sequence[str] | None = None,
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
    **overrides
        Applied to every run (e.g. ``pretrained=False`` or ``device="cuda"``); None values are dropped.

    Examples
    --------
    >>> [c.run_id[:-9] for c in grid_configs("smoke", regimes=["lora"])]
    ['lucchi_pp-lora-dinov2_vits14-s0', 'vnc-lora-dinov2_vits14-s0', 'paired-lora-dinov2_vits14-s0']
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    for name, chosen, allowed in (("regime", regimes, REGIMES), ("train_set", train_sets, TRAIN_SETS)):
        for value in chosen or ():
            _check_choice(name, value, allowed)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    backbones = prof.backbones if backbone is None else (backbone,)
    runs: list[RunConfig] = []
    seen: set[str] = set()
    for seed in prof.seeds:
        for train_set in prof.train_sets:
            if train_sets is not None and train_set not in train_sets:
                continue
            for regime in prof.regimes:
                if regimes is not None and regime not in regimes:
                    continue
                for name in prof.backbones[:1] if regime == "unet" else backbones:
                    cfg = prof.base.replace(backbone=name, regime=regime, train_set=train_set, seed=seed, **overrides)
                    if cfg.run_id not in seen:
                        seen.add(cfg.run_id)
                        runs.append(cfg)
    return runs
