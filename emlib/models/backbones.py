"""Vision-foundation-model backbones: one registry, one factory, one wrapper class.

Every backbone of the study (DINOv2, DINOv3, OpenCLIP) is described by a frozen
:class:`BackboneSpec` held in the registry (:mod:`emlib.models.registry`) and built by
:func:`create_backbone`. The result is a :class:`Backbone`, a ``torch.nn.Module`` with one
interface whatever the family:

- ``forward_tokens(x)`` gives the last layer's patch tokens ``(B, N, C)`` (final norm applied,
  class and register tokens removed), ``N = (H / p) * (W / p)``;
- ``forward(x)`` gives the same tokens as a feature map ``(B, C, H / p, W / p)``;
- ``embed(x)`` gives one global embedding per image ``(B, C)``: the mean of the patch tokens for
  DINOv2/DINOv3 and the class token for OpenCLIP, as in the authors' adapters
  (``uhlmanngroup/DINO-EM-PEFT``, ``backbones/base.py``).

DINOv2 and DINOv3 are built with timm (``dynamic_img_size=True``, so any input whose sides are
multiples of the patch size works, square or not). OpenCLIP is built with open_clip; only the
vision tower is kept, and its learned positional embeddings are interpolated (bicubic,
``align_corners=False``, like ``open_clip.model.resize_pos_embed``) to the input's patch grid
on every call.

Normalisation: every spec carries the ImageNet mean and standard deviation, the OpenCLIP ones
included. That is what the authors' configs do (``preset: em`` everywhere) even though the
OpenCLIP checkpoints were trained with other statistics (CLIP's, or 0.5/0.5 for
``ViT-L-14 / laion2b_s32b_b82k``); emlib reproduces the configs, not the checkpoints' defaults.

Weights: with ``pretrained=True`` the factory asks :func:`emlib.models.hub.find_weights` for the
file (an explicit ``weights=`` file, ``$EMLIB_WEIGHTS``, the torch.hub checkpoint folder, the
Hugging Face cache, and only then, online, a download into that cache) and loads it with
:func:`emlib.models.weights.load_weights_file` (format judged by content, key names of every
published format, strict). Offline, a missing file is one sentence naming where it looked and the
fix. ``pretrained=False`` gives random weights, labelled ``"random weights"``, for tests only.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # one definition, shared with the data layer
from emlib.errors import ConfigError, ShapeError
from emlib.models.hub import find_weights
from emlib.models.posembed import POS_INTERPOLATIONS, check_pos_interpolation, meta_forward_features
from emlib.models.registry import get_backbone_spec, list_backbones, register_backbone
from emlib.models.weights import RANDOM_WEIGHTS_LABEL, WEIGHTS_ENV, BackboneSpec, build_random_model, load_weights_file

__all__ = [
    "BackboneSpec",
    "Backbone",
    "register_backbone",
    "list_backbones",
    "get_backbone_spec",
    "create_backbone",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHTS_ENV",
    "RANDOM_WEIGHTS_LABEL",
    "POS_INTERPOLATIONS",
]


# --------------------------------------------------------------------------------------------
# The wrapper module
# --------------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """A ViT backbone with one interface for DINOv2, DINOv3 and OpenCLIP.

    Build it with :func:`create_backbone`, not directly.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ``VisionTransformer``/``Eva`` (DINO families) or an open_clip
        ``VisionTransformer`` (the ``.visual`` tower of a CLIP model).
    spec : BackboneSpec
        The registry entry the model was built from.
    weights_label : str, default='random weights'
        Where the weights came from, written into every run folder.
    pos_interpolation : {'timm', 'meta'}, default='timm'
        How DINOv2 resizes its positional embedding to the input's grid: timm's or Meta's
        (:mod:`emlib.models.posembed`). DINOv3 (RoPE) and OpenCLIP ignore it.

    Attributes
    ----------
    spec : BackboneSpec
    name : str
    patch_size : int
        Patch side in pixels; input sides must be multiples of it.
    embed_dim : int
        Channels ``C`` of tokens, feature maps and embeddings.
    mean, std : tuple of 3 floats
        Normalisation the data layer must apply.
    weights_label : str
        ``"random weights"``, or ``"pretrained (<tag>) from <file or hf:repo/file> sha256:<12 hex>"``.
    num_prefix_tokens : int
        Class + register tokens in front of the patch tokens (1 for DINOv2 and OpenCLIP,
        5 for DINOv3).
    pos_interpolation : str
    model : torch.nn.Module
        The wrapped library module (LoRA adapters are injected into it).
    """

    def __init__(
        self,
        model: nn.Module,
        spec: BackboneSpec,
        *,
        weights_label: str = RANDOM_WEIGHTS_LABEL,
        pos_interpolation: str = "timm",
    ) -> None:
        super().__init__()
        self.pos_interpolation = check_pos_interpolation(pos_interpolation)
        self.model = model
        self.spec = spec
        self.name = spec.name
        self.patch_size = spec.patch_size
        self.embed_dim = spec.embed_dim
        self.mean = spec.mean
        self.std = spec.std
        self.weights_label = weights_label
        self.lora_settings: Any = None  # set by emlib.models.lora.apply_lora
        if spec.library == "timm":
            self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 1))
            width = int(getattr(model, "embed_dim", spec.embed_dim))
        else:
            if getattr(model, "attn_pool", None) is not None:
                raise ConfigError(
                    f"open_clip model {spec.arch!r} of {spec.name} uses attentional pooling, "
                    "which emlib does not support; register a plain ViT instead."
                )
            self.num_prefix_tokens = 1
            width = int(model.conv1.out_channels)
        if width != spec.embed_dim:
            raise ConfigError(
                f"backbone spec {spec.name!r} says embed_dim={spec.embed_dim} but {spec.arch} "
                f"has width {width}; fix the spec."
            )

    def extra_repr(self) -> str:
        extra = f", pos_interpolation={self.pos_interpolation!r}" if self.pos_interpolation != "timm" else ""
        return f"name={self.name!r}, patch_size={self.patch_size}, weights={self.weights_label!r}{extra}"

    # ---- geometry ---------------------------------------------------------------------------

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        """Patch grid ``(h // p, w // p)`` of an ``h x w`` input.

        Parameters
        ----------
        h, w : int
            Input height and width in pixels; both must be positive multiples of ``patch_size``.

        Returns
        -------
        tuple of 2 ints
            Rows and columns of the patch grid.

        Raises
        ------
        ConfigError
            If ``h`` or ``w`` is not a positive multiple of the patch size.

        Examples
        --------
        >>> create_backbone("dinov2_vits14", pretrained=False).grid_size(28, 42)
        (2, 3)
        """
        p = self.patch_size
        h, w = int(h), int(w)
        if h < p or w < p or h % p or w % p:
            sh, sw = max(p, h // p * p), max(p, w // p * p)
            raise ConfigError(
                f"input {h}x{w} is not a multiple of the patch size {p} of {self.name}; "
                f"crop or resize to e.g. {sh}x{sw}."
            )
        return h // p, w // p

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(
                f"{self.name} expects a float tensor of shape (B, 3, H, W), got {shape}; "
                "replicate grey images to 3 channels and add a batch axis."
            )
        return self.grid_size(x.shape[-2], x.shape[-1])

    # ---- forward passes ---------------------------------------------------------------------

    def _all_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All last-layer tokens ``(B, prefix + N, C)`` with the final norm applied."""
        if self.spec.library == "timm":
            if self.pos_interpolation == "meta" and self.spec.family == "dinov2":
                return meta_forward_features(self.model, x, offset=self.spec.meta_offset,
                                             antialias=self.spec.meta_antialias)
            return self.model.forward_features(x)
        return self._openclip_tokens(x)

    def _openclip_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Positional embedding ``(1 + gh*gw, C)`` resized to a ``gh x gw`` grid."""
        pos = self.model.positional_embedding
        cls_pos, grid_pos = pos[:1], pos[1:]
        old = math.isqrt(grid_pos.shape[0])
        if (old, old) == (gh, gw):
            return pos
        grid_pos = grid_pos.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(
            grid_pos.float(), size=(gh, gw), mode="bicubic", align_corners=False, antialias=True
        ).to(pos.dtype)
        grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(gh * gw, -1)
        return torch.cat([cls_pos, grid_pos], dim=0)

    def _openclip_tokens(self, x: torch.Tensor) -> torch.Tensor:
        v = self.model
        x = v.conv1(x)  # (B, C, gh, gw)
        b, _, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self._openclip_pos_embed(gh, gw).to(x.dtype)
        x = v.patch_dropout(x)
        x = v.ln_pre(x)
        x = v.transformer(x)
        return v.ln_post(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Last-layer patch tokens (final norm applied, class/register tokens removed).

        Parameters
        ----------
        x : Tensor of shape (B, 3, H, W), float
            Normalised images; ``H`` and ``W`` multiples of ``patch_size``.

        Returns
        -------
        Tensor of shape (B, N, C)
            ``N = (H / p) * (W / p)`` tokens in row-major patch order, ``C = embed_dim``.
        """
        self._check_input(x)
        return self._all_tokens(x)[:, self.num_prefix_tokens :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens as a feature map.

        Parameters
        ----------
        x : Tensor of shape (B, 3, H, W), float
            Normalised images; ``H`` and ``W`` multiples of ``patch_size``.

        Returns
        -------
        Tensor of shape (B, C, H / p, W / p)
        """
        gh, gw = self._check_input(x)
        tokens = self._all_tokens(x)[:, self.num_prefix_tokens :]
        return tokens.transpose(1, 2).reshape(x.shape[0], self.embed_dim, gh, gw)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One global embedding per image (``spec.embedding``).

        ``'mean_patch'`` (DINOv2, DINOv3) is the mean of the last-layer patch tokens;
        ``'cls'`` (OpenCLIP) is the class token after the final norm, before CLIP's projection.

        Parameters
        ----------
        x : Tensor of shape (B, 3, H, W), float

        Returns
        -------
        Tensor of shape (B, C)
        """
        self._check_input(x)
        tokens = self._all_tokens(x)
        if self.spec.embedding == "cls":
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens :].mean(dim=1)

    def param_count(self, *, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def create_backbone(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    pos_interpolation: str = "timm",
) -> Backbone:
    """Build a registered backbone, with pretrained or random weights.

    Parameters
    ----------
    name : str
        Registered name, see :func:`list_backbones`.
    pretrained : bool, default=True
        Load pretrained weights. ``False`` gives random weights (tests and smoke runs only).
    weights : path-like, default=None
        A local weights file, used before anything else: any format the hubs or Meta publish
        (timm safetensors, Meta ``.pth`` for DINOv2/DINOv3, a whole open_clip CLIP checkpoint or a
        visual-tower state dict), whatever its suffix.
    device : str or torch.device, default=None
        Where to put the module. With ``pretrained=False`` the module is built directly there
        (``"meta"`` gives shapes without memory).
    pos_interpolation : {'timm', 'meta'}, default='timm'
        DINOv2's positional-embedding resize: timm's, or Meta's hub model's (what the authors ran;
        the paper profile's choice). See :mod:`emlib.models.posembed`.

    Returns
    -------
    Backbone
        ``weights_label`` records where the weights came from.

    Raises
    ------
    ConfigError
        Unknown ``name``, or ``weights`` given together with ``pretrained=False``.
    WeightsError
        No weights found (the explicit file missing; offline and nothing on this machine, which
        fails in seconds), a download refused (gated repo: accept the terms, log in), a file that
        is not the published one, or a file that does not fit the architecture.

    Notes
    -----
    Resolution order with ``pretrained=True``: :func:`emlib.models.hub.find_weights`. The label
    names the file and the start of its SHA-256, e.g. ``pretrained (lvd142m) from
    hf:timm/vit_small_patch14_dinov2.lvd142m/model.safetensors sha256:1a2b3c4d5e6f``.

    Examples
    --------
    >>> bb = create_backbone("dinov2_vits14", pretrained=False)
    >>> bb(torch.zeros(1, 3, 28, 42)).shape
    torch.Size([1, 384, 2, 3])
    """
    spec = get_backbone_spec(name)
    check_pos_interpolation(pos_interpolation)
    if not pretrained:
        if weights is not None:
            raise ConfigError(
                f"weights={str(weights)!r} was given with pretrained=False for {name}; "
                "drop weights= or set pretrained=True."
            )
        if device is not None:
            with torch.device(device):
                model = build_random_model(spec)
        else:
            model = build_random_model(spec)
        return Backbone(model, spec, weights_label=RANDOM_WEIGHTS_LABEL, pos_interpolation=pos_interpolation)

    source = find_weights(name, weights, download=True)
    model, label = load_weights_file(spec, source.path), source.label()
    if device is not None:
        model = model.to(device)
    return Backbone(model, spec, weights_label=label, pos_interpolation=pos_interpolation)
