"""What a backbone is built from: its spec, and how a weights file becomes its tensors.

A :class:`BackboneSpec` is the metadata of one pretrained backbone, kept as data: the library and
architecture that build it, its patch size and width, the normalisation it expects, and where its
weights are published (Hugging Face repo and the file names it serves, the publisher's own file
name and URL, the SHA-256 where the publisher gives one, the approximate size, licence and gating).
The registry of specs lives in :mod:`emlib.models.registry`, finding (and downloading) the file in
:mod:`emlib.models.hub`; this module reads a file and loads it into the architecture:

- the format is decided by the file's **content**, never its suffix: safetensors (an 8-byte
  little-endian header length, then JSON), torch zip checkpoints (``PK\\x03\\x04``) and legacy torch
  files, the latter two always with ``torch.load(weights_only=True)`` (nothing else is unpickled);
- containers (``state_dict``, ``model``, ``module``, ``teacher``) are unwrapped, and the key names
  of every published format are converted: timm's, Meta's DINOv2/DINOv3 (by timm's own
  ``checkpoint_filter_fn`` of the model's module), a whole open_clip CLIP checkpoint (its ``visual.``
  tower kept, the text tower dropped) or a vision-tower-only dict;
- loading is strict: a missing or unexpected key, or a tensor of another shape, is one sentence;
- nothing is opened that is not a regular file (a folder, a FIFO, a device, a broken link or a
  link loop is one sentence, and reading never blocks), and a zip archive is refused from its
  declared sizes before anything is inflated when they exceed what the backbone can need
  (:func:`archive_limit`; the checks are those of :mod:`emlib.models.weightfile`).

Random weights (:data:`RANDOM_WEIGHTS_LABEL`) are for tests and smoke runs only.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from emlib.errors import ConfigError, WeightsError, short_reason
from emlib.models.weightfile import check_archive, weights_file_problem

__all__ = [
    "BackboneSpec", "WEIGHTS_ENV", "RANDOM_WEIGHTS_LABEL", "FORMATS", "checkpoint_format", "read_checkpoint",
    "convert_state_dict", "load_weights_file", "published_hash", "build_random_model", "state_dict_mismatch",
    "archive_limit",
]

WEIGHTS_ENV = "EMLIB_WEIGHTS"
RANDOM_WEIGHTS_LABEL = "random weights"

#: Formats :func:`checkpoint_format` recognises from a file's first bytes.
FORMATS = ("safetensors", "torch-zip", "torch-legacy")

_FAMILIES = ("dinov2", "dinov3", "openclip")
_EMBEDDINGS = ("mean_patch", "cls")
_CONTAINERS = ("state_dict", "model", "module", "teacher")
#: torch.hub's convention: the hex after the last '-' of a published file name starts its SHA-256.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_LEGACY_TORCH = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickle protocol 2 + torch's legacy magic number
#: A checkpoint may hold this many times the backbone's float32 tensors (a training checkpoint: teacher,
#: student and their optimiser state), plus :data:`_ARCHIVE_SLACK` bytes, before its archive is refused.
ARCHIVE_FACTOR = 4
_ARCHIVE_SLACK = 64_000_000
_UNKNOWN_SIZE_LIMIT = 24_000_000_000  # a spec with size_mb=0: about 4 x the largest registered backbone


@dataclass(frozen=True)
class BackboneSpec:
    """Everything emlib needs to know about one pretrained backbone.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"dinov2_vits14"``.
    family : {'dinov2', 'dinov3', 'openclip'}
        Which library builds it: timm for the DINO families, open_clip for OpenCLIP.
    arch : str
        timm model name (``"vit_small_patch14_dinov2"``) or open_clip model name (``"ViT-L-14"``).
    pretrained_tag : str
        timm pretrained tag (``"lvd142m"``) or open_clip pretrained tag (``"laion2b_s32b_b82k"``).
    patch_size : int
        Side of one square patch, in pixels.
    embed_dim : int
        Width of the patch tokens (channels of the feature map).
    depth : int
        Number of transformer blocks (LoRA wraps every one of them).
    mean, std : tuple of 3 floats
        Per-channel normalisation applied by the data layer to images scaled to [0, 1].
    embedding : {'mean_patch', 'cls'}
        How :meth:`Backbone.embed` pools the tokens into one vector per image.
    license : str
        Licence of the pretrained weights.
    weights_filename : str, default=''
        The publisher's own file name (Meta's ``dinov2_vits14_pretrain.pth``), looked for in
        ``$EMLIB_WEIGHTS`` and the torch.hub checkpoint folder; empty when there is none (OpenCLIP).
    weights_url : str, default=''
        Where that file is published (a direct URL, or the download page when access is gated).
    hf_repo : str, default=''
        Hugging Face repo the libraries download from (``"timm/vit_small_patch14_dinov2.lvd142m"``).
    hub_files : tuple of str, default=()
        File names that repo serves, in the order the library tries them.
    sha256 : str, default=''
        SHA-256 of the publisher's file, or its start, where the publisher gives one.
    size_mb : int, default=0
        Approximate download size in MB (0: unknown).
    gated : bool, default=False
        Whether the download needs accepted licence terms and a Hugging Face login.
    license_url : str, default=''
        The page with the licence (where gated terms are accepted).
    meta_offset : float, default=0.1
        ``interpolate_offset`` of Meta's own DINOv2 model (``dinov2/hub/backbones.py``): 0.1 for
        the plain models, 0.0 for those with registers (:mod:`emlib.models.posembed`).
    meta_antialias : bool, default=False
        ``interpolate_antialias`` of Meta's own DINOv2 model: True for those with registers.

    Examples
    --------
    >>> spec = BackboneSpec(
    ...     "dinov2_vits14", "dinov2", "vit_small_patch14_dinov2", "lvd142m", 14, 384, 12,
    ...     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "mean_patch", "apache-2.0",
    ...     "dinov2_vits14_pretrain.pth", "https://dl.fbaipublicfiles.com/dinov2/...",
    ... )
    >>> spec.library, spec.hub_id
    ('timm', 'vit_small_patch14_dinov2.lvd142m')
    """

    name: str
    family: Literal["dinov2", "dinov3", "openclip"]
    arch: str
    pretrained_tag: str
    patch_size: int
    embed_dim: int
    depth: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding: Literal["mean_patch", "cls"]
    license: str
    weights_filename: str = ""
    weights_url: str = ""
    hf_repo: str = ""
    hub_files: tuple[str, ...] = ()
    sha256: str = ""
    size_mb: int = 0
    gated: bool = False
    license_url: str = ""
    meta_offset: float = 0.1
    meta_antialias: bool = False

    def __post_init__(self) -> None:
        if self.family not in _FAMILIES:
            raise ConfigError(
                f"family={self.family!r} of backbone spec {self.name!r} is not supported; "
                f"use one of {_FAMILIES}."
            )
        if self.embedding not in _EMBEDDINGS:
            raise ConfigError(
                f"embedding={self.embedding!r} of backbone spec {self.name!r} is not supported; "
                f"use one of {_EMBEDDINGS}."
            )
        if self.patch_size < 1 or self.embed_dim < 1 or self.depth < 1:
            raise ConfigError(
                f"backbone spec {self.name!r} has patch_size={self.patch_size}, "
                f"embed_dim={self.embed_dim}, depth={self.depth}; give positive integers."
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(
                f"backbone spec {self.name!r} needs 3-channel mean and std; "
                f"got {len(self.mean)} and {len(self.std)} values."
            )
        if not isinstance(self.hub_files, tuple) or (self.hub_files and not self.hf_repo):
            raise ConfigError(
                f"backbone spec {self.name!r} has hub_files={self.hub_files!r} and hf_repo={self.hf_repo!r}; "
                "give hub_files as a tuple of file names, together with the repo that serves them."
            )

    @property
    def library(self) -> str:
        """Library that builds the model: ``'timm'`` or ``'open_clip'``."""
        return "open_clip" if self.family == "openclip" else "timm"

    @property
    def hub_id(self) -> str:
        """Identifier the library's hub download uses (``timm`` name.tag or open_clip name/tag)."""
        if self.library == "timm":
            return f"{self.arch}.{self.pretrained_tag}"
        return f"{self.arch}/{self.pretrained_tag}"


def published_hash(spec: BackboneSpec, filename: str) -> str:
    """The SHA-256 (or its start) a file called ``filename`` must have, or ``''`` when none is published.

    Only the publisher's own name counts (``spec.weights_filename``): its torch.hub-style hash
    (``...-8aa4cbdd.pth``), else ``spec.sha256``. Any other name promises nothing.

    Examples
    --------
    >>> spec = BackboneSpec("x", "dinov3", "a", "t", 16, 384, 12, (0, 0, 0), (1, 1, 1), "mean_patch", "l",
    ...                     "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    >>> published_hash(spec, "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"), published_hash(spec, "mine.pth")
    ('08c60483', '')
    """
    if not spec.weights_filename or filename != spec.weights_filename:
        return ""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else spec.sha256


def build_random_model(spec: BackboneSpec) -> nn.Module:
    """The architecture of ``spec`` with random weights (no network access).

    Parameters
    ----------
    spec : BackboneSpec
        The backbone; ``spec.library`` says which library builds it.

    Returns
    -------
    torch.nn.Module
        The timm model without a classifier head (DINO families) or the open_clip vision tower.

    Raises
    ------
    ConfigError
        open_clip has no model config named ``spec.arch``.
    """
    if spec.library == "timm":
        import timm

        return timm.create_model(spec.arch, pretrained=False, dynamic_img_size=True, num_classes=0)
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(spec.arch)
    if cfg is None:
        raise ConfigError(
            f"open_clip has no model config {spec.arch!r} for {spec.name}; "
            "fix the spec's arch (see open_clip.list_models())."
        )
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=cfg.get("quick_gelu", False))


# --------------------------------------------------------------------------------------------
# Reading a file by its content
# --------------------------------------------------------------------------------------------


def archive_limit(spec: BackboneSpec) -> int:
    """The most bytes a zip checkpoint of ``spec`` may inflate to: :data:`ARCHIVE_FACTOR` times its
    ``size_mb`` (float32 tensors) plus 64 MB; 24 GB when the size is unknown.

    Examples
    --------
    >>> spec = BackboneSpec("x", "dinov2", "a", "t", 14, 384, 12, (0, 0, 0), (1, 1, 1), "mean_patch", "l", size_mb=88)
    >>> archive_limit(spec)
    416000000
    """
    if spec.size_mb <= 0:
        return _UNKNOWN_SIZE_LIMIT
    return ARCHIVE_FACTOR * spec.size_mb * 1_000_000 + _ARCHIVE_SLACK


def checkpoint_format(path: str | Path) -> str | None:
    """The format of a weights file judged from its first bytes: one of :data:`FORMATS`, or None.

    Examples
    --------
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     torch.save({"w": torch.zeros(1)}, f"{d}/looks.safetensors")
    ...     checkpoint_format(f"{d}/looks.safetensors")
    'torch-zip'
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
        if head.startswith(b"PK\x03\x04"):
            return "torch-zip"
        if head.startswith(_LEGACY_TORCH):
            return "torch-legacy"
        if len(head) >= 9:
            (n,) = struct.unpack("<Q", head[:8])
            if 2 <= n <= min(path.stat().st_size - 8, 100_000_000) and head[8:9] == b"{":
                handle.seek(8)
                try:
                    json.loads(handle.read(n))
                except ValueError:
                    return None
                return "safetensors"
    return None


def _unwrap(sd: Any) -> Any:
    for _ in range(3):  # e.g. {"teacher": {...}} or {"model": {"state_dict": ...}}
        inner = next((sd[k] for k in _CONTAINERS if isinstance(sd, dict) and isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    return sd


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read by content and unwrapped from the usual containers.

    Parameters
    ----------
    path : path-like
        A safetensors file or a ``torch.save`` file (zip or legacy), whatever its name.

    Returns
    -------
    dict of str to Tensor
        Key names as in the file, less a ``module.`` prefix (DataParallel) and, for a DINO training
        checkpoint (``teacher``), its ``backbone.`` prefix (heads dropped).

    Raises
    ------
    WeightsError
        A file that is neither safetensors nor a torch checkpoint loadable with
        ``torch.load(weights_only=True)`` (a pickle with code in it is refused, never run), one
        that holds no tensors, or a path that is not a regular file (checked before it is opened).
    """
    path = Path(path)
    problem = weights_file_problem(path)
    if problem:
        raise WeightsError(f"weights file {path} {problem}; give the path of the weights file itself.")
    kind = checkpoint_format(path)
    if kind is None:
        raise WeightsError(
            f"{path} is neither a safetensors file nor a torch checkpoint (judged by its content, not its name); "
            "download the file again from the hub or the publisher."
        )
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - a damaged file is one sentence
            raise WeightsError(f"{path} is a damaged safetensors file ({short_reason(err)}); download it again.") from err
    else:
        try:
            with open(path, "rb") as handle:  # a handle, not a name: newer torch.load also judges by suffix
                sd = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - includes UnpicklingError for anything but tensors
            raise WeightsError(
                f"{path} is a torch file that torch.load(weights_only=True) refuses ({short_reason(err)}); it was not "
                "unpickled, since it may run code: use the file the hub or the publisher serves."
            ) from err
    sd = _unwrap(sd)
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} holds no state dict of tensors; use the file the hub or the publisher serves.")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("backbone.") for k in sd):  # a DINO training checkpoint: backbone + heads
        sd = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    return sd


# --------------------------------------------------------------------------------------------
# Key names and strict loading
# --------------------------------------------------------------------------------------------


def convert_state_dict(spec: BackboneSpec, model: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` under the key names of ``model``, the module :func:`build_random_model` gives for ``spec``.

    timm models (DINOv2, DINOv3): timm's own ``checkpoint_filter_fn`` of the model's module
    (``timm.models.vision_transformer`` or ``timm.models.eva``), which leaves timm's names alone and
    converts Meta's (``mask_token`` dropped, ``storage_tokens`` -> ``reg_token``, ``ls1.gamma`` ->
    ``gamma_1``, RoPE periods and bias masks dropped). open_clip: a whole CLIP state dict keeps its
    ``visual.`` tower (prefix removed); a vision-tower-only dict is used as it is.
    """
    if spec.library == "open_clip":
        if any(k.startswith("visual.") for k in sd):
            return {k.removeprefix("visual."): v for k, v in sd.items() if k.startswith("visual.")}
        return dict(sd)
    _check_dropped_biases(spec, model, sd)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is None:
        return dict(sd)
    with contextlib.redirect_stdout(io.StringIO()):  # timm's eva filter prints one line per block it skips
        return filter_fn(dict(sd), model)


def _check_dropped_biases(spec: BackboneSpec, model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Meta's DINOv3 files store ``attn.qkv.bias``; timm's S/B/L models have none (the published biases are all
    zero) and its filter drops them, so a non-zero (unmasked) bias would be lost silently: refuse it."""
    if "storage_tokens" not in sd or any(name.endswith("q_bias") for name, _ in model.named_parameters()):
        return
    for key, bias in sd.items():
        if key.endswith("attn.qkv.bias"):
            mask = sd.get(key + "_mask")
            if torch.count_nonzero(bias * mask if mask is not None else bias):
                raise WeightsError(
                    f"{key} of this Meta DINOv3 checkpoint is not zero, but timm's {spec.arch} of {spec.name} has no "
                    f"q/v biases to hold it; register the {spec.arch}_qkvb architecture for this checkpoint."
                )


def state_dict_mismatch(model: nn.Module, sd: dict[str, torch.Tensor]) -> str:
    """How ``sd`` fails to fit ``model`` exactly: '' when it fits.

    Parameters
    ----------
    model : torch.nn.Module
        The module to load into.
    sd : dict of str to Tensor
        A state dict in the key names of ``model``.

    Returns
    -------
    str
        '' when the keys and shapes match, else the first (at most three) missing keys, unexpected
        keys and shape differences, joined with ``; ``.

    Examples
    --------
    >>> state_dict_mismatch(nn.Linear(2, 3), {"weight": torch.zeros(3, 2)})
    'missing bias'
    """
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{what} {', '.join(keys[:3])}{more}")
    return "; ".join(parts)


def load_weights_file(spec: BackboneSpec, path: str | Path) -> nn.Module:
    """The architecture of ``spec`` holding the tensors of the file at ``path`` (strict).

    Parameters
    ----------
    spec : BackboneSpec
    path : path-like
        Any format :func:`read_checkpoint` reads, in any key names :func:`convert_state_dict` knows.

    Returns
    -------
    torch.nn.Module
        The timm model (DINO families) or open_clip vision tower, in float32 on the CPU.

    Raises
    ------
    WeightsError
        The file cannot be read, is a zip archive declaring more than :func:`archive_limit` bytes
        (refused before inflating), or its tensors do not fit: one sentence naming the file, the
        backbone and the first missing/unexpected keys.
    """
    path = Path(path)
    problem = weights_file_problem(path)
    if problem:
        raise WeightsError(f"weights file {path} for {spec.name} {problem}; give the path of the weights file itself.")
    check_archive(path, archive_limit(spec), backbone=spec.name)
    sd = read_checkpoint(path)
    model = build_random_model(spec)
    converted = convert_state_dict(spec, model, sd)
    problem = state_dict_mismatch(model, converted)
    if problem:
        fits = f"a file of {spec.hf_repo} ({', '.join(spec.hub_files)})" if spec.hf_repo else f"the {spec.hub_id} weights"
        fits += f" or Meta's {spec.weights_filename}" if spec.weights_filename else ""
        raise WeightsError(f"weights file {path} does not fit {spec.name} ({spec.hub_id}): {problem}; use {fits} for this backbone.")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in converted.items()}, strict=True)
    return model
