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
from emlib.validation import Interval, Options, Pattern, check_choice, check_fields, check_keys

__all__ = [
    "BUILD_ENV",
    "RunConfig",
    "LoraSettings",
    "LORA_TARGETS",
    "TRAIN_SETS",
    "TEST_SETS",
    "MIXED_TEST",
    "SCORED_TEST_SETS",
    "TEST_LABELS",
    "REGIMES",
    "INPUT_ALIGNMENTS",
    "POS_INTERPOLATIONS",
    "PAIRINGS",
    "LOSSES",
    "ALIGNMENT_FIELDS",
    "OPTIONAL_FIELDS",
    "WHERE_FIELDS",
    "SEED_RANGE",
    "LR_RANGE",
    "MAX_LORA_RANK",
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
#: The authors' test folder for paired runs: the Lucchi++ and VNC test slices together, IoU_fg pooled over all
#: of them (``test_set="mixed"`` rows of a results table, beside the per-test-set rows).
MIXED_TEST: str = "mixed"
#: Every ``test_set`` of a results table: each test set alone, and the mixed test set.
SCORED_TEST_SETS: tuple[str, ...] = (*TEST_SETS, MIXED_TEST)
#: Input-level remedies of :mod:`emlib.data.alignment` (``RunConfig.input_alignment``; None: none).
INPUT_ALIGNMENTS: tuple[str, ...] = ("standardise", "histmatch", "clahe", "resample")
#: How a DINOv2 backbone resizes its positional embedding to the input's patch grid
#: (``RunConfig.pos_interpolation``, :mod:`emlib.models.posembed`): timm's, or Meta's own model class's.
POS_INTERPOLATIONS: tuple[str, ...] = ("timm", "meta")
#: Segmentation losses (``RunConfig.loss``, :func:`emlib.losses.segmentation_loss`): foreground Dice pooled
#: over the batch, cross-entropy, their sum, and the authors' MONAI Dice (per image, both classes).
LOSSES: tuple[str, ...] = ("dice", "ce", "ce_dice", "monai_dice")
#: How a paired run's Lucchi++ images meet their labels (``RunConfig.pairing``, :mod:`emlib.data.pairing`):
#: each with its own, or as the authors' published script pairs them (by sorted file name).
PAIRINGS: tuple[str, ...] = ("correct", "published")
#: The labels a model is scored against (the ``test_labels`` column of a results table): the true ones, or
#: those the authors' published script gives the test images (:data:`PAIRINGS`).
TEST_LABELS: tuple[str, ...] = PAIRINGS


#: Linear maps of a transformer block that can carry a LoRA adapter (the paper uses the first two).
LORA_TARGETS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
#: The largest LoRA rank a :class:`LoraSettings` accepts before a backbone is known; where it is, the rank must
#: also be at most the backbone's width (:func:`emlib.models.lora.check_lora_rank`; the widest registered is 1536).
MAX_LORA_RANK = 4096
#: Seeds (``seed``, ``val_seed``, a profile's seeds): 32-bit, so numpy's, torch's and Python's generators all take
#: the seed as it is given.
SEED_RANGE = Interval(0, 2**32 - 1, high_closed=True, hint=" (seeds are 32-bit integers)")
#: Learning rates of AdamW, which moves each weight by about the rate per step: above 1 a run can only diverge.
LR_RANGE = Interval(0, 1, low_open=True, high_closed=True, hint=" (emlib's profiles use 5e-5 to 3e-3)")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (the authors' cluster configs: r=16, alpha=32, dropout 0).

    Parameters
    ----------
    rank : int, default=16
        Rank ``r`` of the update ``B A`` (A: ``r x in``, B: ``out x r``), in [1, :data:`MAX_LORA_RANK`]; a
        backbone takes at most its width (``embed_dim``), checked before a run starts.
    alpha : float, default=32
        Scale numerator, finite and > 0; the update is multiplied by ``alpha / rank``.
    dropout : float, default=0.0
        Dropout on the LoRA input, in [0, 1).
    targets : tuple of str, default=('attn.qkv', 'attn.proj')
        Which linear maps of each block get an adapter, from ``LORA_TARGETS``.
    """

    rank: int = field(default=16, metadata=Interval(1, MAX_LORA_RANK, high_closed=True,
                                                     hint=" (and at most the backbone's width, e.g. 384 for a ViT-S)").meta)
    alpha: float = field(default=32, metadata=Interval(0, low_open=True).meta)
    dropout: float = field(default=0.0, metadata=Interval(0, 1).meta)
    targets: tuple[str, ...] = field(default=("attn.qkv", "attn.proj"), metadata=Options(LORA_TARGETS, many=True).meta)

    def __post_init__(self) -> None:
        if isinstance(self.targets, list):
            object.__setattr__(self, "targets", tuple(self.targets))
        check_fields(self)

    @property
    def scale(self) -> float:
        """``alpha / rank``, the factor on the low-rank update."""
        return self.alpha / self.rank


_POSITIVE = Interval(1).meta  # integers >= 1
_ABOVE_ZERO = Interval(0, low_open=True).meta  # numbers > 0
_AT_LEAST_ZERO = Interval(0).meta
_SEED = SEED_RANGE.meta
_LR = LR_RANGE.meta


def _choice(choices: tuple[str, ...]) -> dict[str, Options]:
    return Options(choices).meta


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run and its evaluation.

    Sizes are in pixels, learning rates per step. ``crop=None`` means whole slices resized as the
    authors do (long side ``long_edge``, sides floored to the patch size, no augmentation).
    """

    backbone: str = "dinov2_vits14"
    pretrained: bool = True
    weights: str | None = None
    pos_interpolation: str = field(default="timm", metadata=_choice(POS_INTERPOLATIONS))  # DINOv2 only; "meta": Meta's
    regime: str = field(default="frozen", metadata=_choice(REGIMES))
    train_set: str = field(default="lucchi_pp", metadata=_choice(TRAIN_SETS))
    balance: bool = False
    pairing: str = field(default="correct", metadata=_choice(PAIRINGS))  # "published": the authors' paired set
    head: str = field(default="deconv", metadata=_choice(("deconv", "linear")))
    head_channels: int = field(default=512, metadata=_POSITIVE)
    crop: int | None = field(default=224, metadata=_POSITIVE)
    long_edge: int | None = field(default=None, metadata=_POSITIVE)
    augment: bool = False
    train_slices: int | None = field(default=None, metadata=_POSITIVE)
    samples_per_epoch: int | None = field(default=None, metadata=_POSITIVE)
    epochs: int = field(default=20, metadata=_POSITIVE)
    batch_size: int = field(default=8, metadata=_POSITIVE)
    lr: float = field(default=5e-5, metadata=_LR)
    lora_lr: float | None = field(default=None, metadata=_LR)
    val_fraction: float = field(default=0.0, metadata=Interval(0, 1, hint=" (the authors hold out 0.1)").meta)
    val_seed: int = field(default=42, metadata=_SEED)
    patience: int | None = field(default=None, metadata=_POSITIVE)
    weight_decay: float = field(default=1e-4, metadata=_AT_LEAST_ZERO)
    loss: str = field(default="dice", metadata=_choice(LOSSES))
    grad_clip: float = field(default=1.0, metadata=_ABOVE_ZERO)
    lora: LoraSettings = field(default_factory=LoraSettings)
    seed: int = field(default=0, metadata=_SEED)
    device: str = field(default="auto", metadata=Pattern(r"auto|cpu|mps|cuda(:\d+)?", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'").meta)
    amp: bool = True
    cache: str = field(default="memory", metadata=_choice(("memory", "disk", "none")))
    eval_window: int | None = field(default=None, metadata=_POSITIVE)
    eval_slices: int | None = field(default=None, metadata=_POSITIVE)
    eval_region: int | None = field(default=None, metadata=_POSITIVE)
    unet_channels: int = field(default=16, metadata=_POSITIVE)
    # Beyond the paper (emlib.plugins): remedies for paired training. At their defaults they are
    # left out of to_dict(), so configs and run digests from before they existed are unchanged.
    input_alignment: str | None = field(default=None, metadata=_choice(INPUT_ALIGNMENTS))
    alignment_reference: str = field(default="lucchi_pp", metadata=_choice(TEST_SETS))
    feature_norm: bool = False
    film: bool = False
    coral_weight: float = field(default=0.0, metadata=_AT_LEAST_ZERO)
    heads_per_domain: bool = False
    fg_reweight: bool = False

    def __post_init__(self) -> None:
        check_fields(self)  # each field against its type and declared constraint; below, rules tying fields together
        if self.weights is not None and not self.pretrained and self.regime != "unet":
            raise ConfigError(f"weights={self.weights!r} was given with pretrained=False; drop weights or set pretrained=True")
        if self.crop is None and self.long_edge is None:
            raise ConfigError("crop=None means whole resized slices, so set long_edge (the authors use 1022)")
        if self.patience is not None and self.val_fraction == 0:
            raise ConfigError(
                f"patience={self.patience} needs a validation split; "
                "set val_fraction > 0 (the authors: val_fraction=0.1, patience=20) or patience=None"
            )
        if self.pairing != "correct" and self.train_set != "paired":
            raise ConfigError(
                f"pairing={self.pairing!r} is the authors' composed paired set, so it needs train_set='paired' "
                f"(got {self.train_set!r}); set train_set='paired' or pairing='correct'"
            )
        self._check_remedies()

    def _check_remedies(self) -> None:
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
        """Readable, unique folder name: ``<train_set>-<regime>-<backbone>-s<seed>-<hash>``
        (``paired_published-...`` for the authors' published pairing)."""
        return self._run_id(self.digest())

    @property
    def legacy_run_id(self) -> str:
        """The folder name emlib gave this run before :data:`WHERE_FIELDS` left its identity (read back, never written)."""
        return self._run_id(self.digest(legacy=True))

    def _run_id(self, digest: str) -> str:
        model = "unet" if self.regime == "unet" else self.backbone
        data = self.train_set if self.pairing == "correct" else f"{self.train_set}_{self.pairing}"
        return f"{data}-{self.regime}-{model}-s{self.seed}-{digest[:8]}"

    def identity(self) -> dict[str, Any]:
        """What the run computes: :meth:`to_dict` with :data:`WHERE_FIELDS` at their defaults.

        Where it runs (``device``, the feature ``cache``) and where its weights file lies (``weights``;
        the file's content is in the run folder's inputs digest) do not change what it computes, so
        ``emlib grid --device cuda`` and a chapter on a GPU find the runs made on a CPU. The fields are
        kept at their defaults rather than dropped, so a config that had them at their defaults keeps
        its digest from before.
        """
        data = self.to_dict()
        data.update({name: _FIELD_DEFAULTS[name] for name in WHERE_FIELDS})
        return data

    def digest(self, *, legacy: bool = False) -> str:
        """SHA-256 of the canonical JSON of :meth:`identity` (``legacy=True``: of :meth:`to_dict`, as before)."""
        data = self.to_dict() if legacy else self.identity()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

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
        check_keys(data, cls)
        data = dict(data)
        if isinstance(data.get("lora"), dict):
            lora = dict(data["lora"])
            lora["targets"] = tuple(lora.get("targets", LoraSettings.targets))
            check_keys(lora, LoraSettings, what="LoRA settings")
            data["lora"] = LoraSettings(**lora)
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (validated again); unknown names raise ConfigError."""
        check_keys(changes, RunConfig)
        return dataclasses.replace(self, **changes)


#: RunConfig fields of the remedies (:mod:`emlib.plugins`); omitted from ``to_dict`` at their defaults.
ALIGNMENT_FIELDS: tuple[str, ...] = (
    "input_alignment", "alignment_reference", "feature_norm", "film", "coral_weight", "heads_per_domain", "fg_reweight",
)
#: Fields added after the first runs; ``to_dict`` leaves them out at their defaults, so the digests
#: (and run ids) of configs made before they existed stay the same. Add every new field here.
OPTIONAL_FIELDS: tuple[str, ...] = ALIGNMENT_FIELDS + (
    "lora_lr", "pos_interpolation", "val_fraction", "val_seed", "patience", "pairing",
)
#: Where a run runs, not what it computes: kept out of its identity (:meth:`RunConfig.identity`).
WHERE_FIELDS: tuple[str, ...] = ("device", "cache", "weights")
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RunConfig)}
