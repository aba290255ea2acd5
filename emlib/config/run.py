"""One training run as a frozen dataclass: :class:`RunConfig` (and :class:`LoraSettings`), with the
names every part of emlib chooses from (training sets, regimes, test sets, remedies).

Choices the authors' protocol leaves open are written down here, next to the value. A
:class:`RunConfig` is validated on construction (:mod:`emlib.validation`), so a bad value ends in
one sentence before any work starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from emlib.errors import ConfigError
from emlib.validation import check_field

__all__ = [
    "BUILD_ENV",
    "RunConfig",
    "LoraSettings",
    "LORA_TARGETS",
    "TRAIN_SETS",
    "TEST_SETS",
    "REGIMES",
    "INPUT_ALIGNMENTS",
    "POS_INTERPOLATIONS",
    "ALIGNMENT_FIELDS",
    "OPTIONAL_FIELDS",
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
#: How a DINOv2 backbone resizes its positional embedding to the input's patch grid
#: (``RunConfig.pos_interpolation``, :mod:`emlib.models.posembed`): timm's, or Meta's own model class's.
POS_INTERPOLATIONS: tuple[str, ...] = ("timm", "meta")


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
        for name in ("alpha", "dropout"):  # wrong types here; the ranges below
            if isinstance(getattr(self, name), (bool, str)) or not isinstance(getattr(self, name), (int, float)):
                check_field(name, getattr(self, name), "float")
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
    pos_interpolation: str = "timm"  # DINOv2 only; "meta" = Meta's hub model (emlib.models.posembed)
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
    lora_lr: float | None = None
    val_fraction: float = 0.0
    val_seed: int = 42
    patience: int | None = None
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
        for f in dataclasses.fields(self):
            check_field(f.name, getattr(self, f.name), str(f.type))
        _check_choice("regime", self.regime, REGIMES)
        _check_choice("train_set", self.train_set, TRAIN_SETS)
        _check_choice("loss", self.loss, ("dice", "ce", "ce_dice"))
        _check_choice("cache", self.cache, ("memory", "disk", "none"))
        _check_choice("head", self.head, ("deconv", "linear"))
        _check_choice("pos_interpolation", self.pos_interpolation, POS_INTERPOLATIONS)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device={self.device!r} is not allowed; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.weights is not None and not self.pretrained and self.regime != "unet":
            raise ConfigError(f"weights={self.weights!r} was given with pretrained=False; drop weights or set pretrained=True")
        if self.crop is None and self.long_edge is None:
            raise ConfigError("crop=None means whole resized slices, so set long_edge (the authors use 1022)")
        for name in ("epochs", "batch_size", "head_channels"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive")
        if self.lora_lr is not None and self.lora_lr <= 0:
            raise ConfigError(f"lora_lr={self.lora_lr} must be positive (or None for lr)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction} must lie in [0, 1) (the authors hold out 0.1)")
        if self.patience is not None and (self.patience < 1 or self.val_fraction == 0):
            raise ConfigError(
                f"patience={self.patience} needs a positive number of epochs and a validation split; "
                "set val_fraction > 0 (the authors: val_fraction=0.1, patience=20) or patience=None"
            )
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

        The fields added after the first runs (:data:`OPTIONAL_FIELDS`: the remedies, ``lora_lr``, ...)
        appear only when they differ from their defaults, so older configs keep their digest.
        """
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for name in OPTIONAL_FIELDS:
            if data[name] == _FIELD_DEFAULTS[name]:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"a RunConfig is read from a dict of its fields, got a {type(data).__name__}")
        _check_known(data)
        data = dict(data)
        if isinstance(data.get("lora"), dict):
            lora = dict(data["lora"])
            lora["targets"] = tuple(lora.get("targets", LoraSettings.targets))
            allowed = [f.name for f in dataclasses.fields(LoraSettings)]
            if set(lora) - set(allowed):
                raise ConfigError(f"unknown LoRA settings {sorted(set(lora) - set(allowed))}; allowed are {allowed}")
            data["lora"] = LoraSettings(**lora)
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (validated again); unknown names raise ConfigError."""
        _check_known(changes)
        return dataclasses.replace(self, **changes)


#: RunConfig fields of the remedies (:mod:`emlib.plugins`); omitted from ``to_dict`` at their defaults.
ALIGNMENT_FIELDS: tuple[str, ...] = (
    "input_alignment", "alignment_reference", "feature_norm", "film", "coral_weight", "heads_per_domain", "fg_reweight",
)
#: Fields added after the first runs; ``to_dict`` leaves them out at their defaults, so the digests
#: (and run ids) of configs made before they existed stay the same. Add every new field here.
OPTIONAL_FIELDS: tuple[str, ...] = ALIGNMENT_FIELDS + ("lora_lr", "pos_interpolation", "val_fraction", "val_seed", "patience")
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def _check_known(names: Any) -> None:
    known = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"unknown RunConfig keys {unknown}; allowed keys are {sorted(known)}")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")
