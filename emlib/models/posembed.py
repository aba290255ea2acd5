"""DINOv2's positional-embedding interpolation as Meta's own model class does it.

A DINOv2 ViT learns one positional embedding per patch of a ``M x M`` grid (``M = 37``: 518-pixel
training crops, patch 14). At any other input grid ``gh x gw`` (``54 x 73`` for a 756 x 1022
Lucchi++ slice) the embedding is resized bicubically, and the two implementations differ:

- **timm** (``timm.layers.resample_abs_pos_embed``, what emlib's backbones run by default):
  ``F.interpolate(size=(gh, gw), mode="bicubic", antialias=True)``;
- **Meta** (``facebookresearch/dinov2``, ``dinov2/models/vision_transformer.py``,
  ``DinoVisionTransformer.interpolate_pos_encoding``; the torch-hub models of
  ``dinov2/hub/backbones.py`` are built with ``interpolate_offset=0.1, interpolate_antialias=False``):
  ``F.interpolate(scale_factor=((gh + 0.1) / M, (gw + 0.1) / M), mode="bicubic", antialias=False)``.
  The output still has ``gh x gw`` entries, but torch places the samples with the given scale
  factor, so every sample sits slightly off timm's. The 0.1 is the "historical kludge" of
  facebookresearch/dino#8. The models with registers (``dinov2_vit*14_reg``) are built with
  ``interpolate_offset=0.0, interpolate_antialias=True``: Meta then passes ``size=(gh, gw)`` with
  antialias, which is timm's resize, so for them the two choices agree (a test checks it). Read at dinov2 commit b8931f7 (the file last changed in 85a2460,
  Oct 2024); since e1277af (Feb 2024) the code passes ``size=(gh, gw)`` instead when
  ``interpolate_offset`` is 0, which only the register models use, and every earlier version computed the
  same scale factors (without antialias) for the plain hub models.

Downsampling (a grid smaller than 37) also differs by timm's antialias; upsampling (the paper's
1022-pixel slices) only by the offset. :func:`meta_forward_features` is timm's
``VisionTransformer.forward_features`` with Meta's interpolation put in; everything else (patch
embedding, class/register tokens, blocks, final norm) is timm's module, so LoRA adapters injected
into the blocks act unchanged.

DINOv3 has no learned positional embedding to resize (rotary embeddings, RoPE, computed for any
grid), and OpenCLIP's positional embedding is resized as open_clip's own ``resize_pos_embed``
does; neither is affected by the choice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emlib.config import POS_INTERPOLATIONS
from emlib.errors import ConfigError, ShapeError

__all__ = ["POS_INTERPOLATIONS", "META_OFFSET", "check_pos_interpolation", "meta_interpolate", "meta_forward_features"]

#: Meta's ``interpolate_offset`` of the DINOv2 hub models.
META_OFFSET = 0.1


def check_pos_interpolation(value: str) -> str:
    """``value`` if it is one of :data:`POS_INTERPOLATIONS`, else a ConfigError naming them."""
    if value not in POS_INTERPOLATIONS:
        raise ConfigError(f"pos_interpolation={value!r} is not known; choose one of {list(POS_INTERPOLATIONS)}")
    return value


def meta_interpolate(
    grid_pos: torch.Tensor, grid: tuple[int, int], *, offset: float = META_OFFSET, antialias: bool = False
) -> torch.Tensor:
    """Resize a square grid of positional embeddings to ``grid`` as Meta's DINOv2 does.

    Parameters
    ----------
    grid_pos : Tensor of shape (1, M * M, C)
        The patch part of the positional embedding (no class/register entries), row-major.
    grid : (int, int)
        Target patch grid ``(rows, cols)``.
    offset : float, default=0.1
        Meta's ``interpolate_offset``: 0.1 for the plain hub models, 0.0 for those with registers
        (``dinov2_vit*14_reg``), where Meta passes the output size instead of scale factors.
    antialias : bool, default=False
        Meta's ``interpolate_antialias``: False for the plain hub models, True for those with registers.

    Returns
    -------
    Tensor of shape (1, rows * cols, C)
        Computed in float32 and cast back to ``grid_pos.dtype``; ``grid_pos`` itself when
        ``grid == (M, M)`` (Meta's shortcut).

    Examples
    --------
    >>> meta_interpolate(torch.zeros(1, 16, 3), (2, 5)).shape
    torch.Size([1, 10, 3])
    """
    n = grid_pos.shape[1] if grid_pos.ndim == 3 else 0
    m = math.isqrt(n)
    if grid_pos.ndim != 3 or grid_pos.shape[0] != 1 or n == 0 or m * m != n:
        raise ShapeError(f"expected a (1, M*M, C) positional embedding, got {tuple(grid_pos.shape)}")
    dim = grid_pos.shape[2]
    rows, cols = int(grid[0]), int(grid[1])
    if (rows, cols) == (m, m):
        return grid_pos
    square = grid_pos.float().reshape(1, m, m, dim).permute(0, 3, 1, 2)
    if offset:
        scale = (float(rows + offset) / m, float(cols + offset) / m)
        out = F.interpolate(square, scale_factor=scale, mode="bicubic", antialias=antialias)
    else:  # Meta: "simply specify an output size instead of a scale factor"
        out = F.interpolate(square, size=(rows, cols), mode="bicubic", antialias=antialias)
    if tuple(out.shape[-2:]) != (rows, cols):  # Meta asserts the same
        raise ShapeError(f"Meta's interpolation gave a {tuple(out.shape[-2:])} grid for {(rows, cols)}")
    return out.permute(0, 2, 3, 1).reshape(1, rows * cols, dim).to(grid_pos.dtype)


def meta_forward_features(
    model: nn.Module, x: torch.Tensor, *, offset: float = META_OFFSET, antialias: bool = False
) -> torch.Tensor:
    """timm ``VisionTransformer.forward_features(x)`` with Meta's positional-embedding interpolation.

    Parameters
    ----------
    model : timm VisionTransformer
        Built with ``dynamic_img_size=True`` and a learned ``pos_embed`` (DINOv2).
    x : Tensor of shape (B, 3, H, W)
    offset, antialias
        Meta's settings of the hub model (:func:`meta_interpolate`; the backbone's spec holds them).

    Returns
    -------
    Tensor of shape (B, prefix + (H / p) * (W / p), C)
        All last-layer tokens, final norm applied (as ``forward_features``).
    """
    if getattr(model, "pos_embed", None) is None or not getattr(model, "dynamic_img_size", False):
        raise ConfigError(
            f"{type(model).__name__} has no learned positional embedding resized per input; "
            "Meta's interpolation applies to DINOv2 only, use pos_interpolation='timm'"
        )
    tokens = model.patch_embed(x)  # (B, gh, gw, C)
    b, gh, gw, dim = tokens.shape
    tokens = tokens.reshape(b, gh * gw, dim)
    n_pos_prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    pos = model.pos_embed
    pos = torch.cat([pos[:, :n_pos_prefix], meta_interpolate(pos[:, n_pos_prefix:], (gh, gw), offset=offset, antialias=antialias)], dim=1)
    prefix = [t.expand(b, -1, -1) for t in (model.cls_token, model.reg_token) if t is not None]
    if model.no_embed_class:  # positions on the patches only, then the prefix tokens in front
        tokens = torch.cat([*prefix, tokens + pos.to(tokens.dtype)], dim=1)
    else:
        tokens = torch.cat([*prefix, tokens], dim=1) + pos.to(tokens.dtype)
    tokens = model.pos_drop(tokens)
    tokens = model.patch_drop(tokens)
    tokens = model.norm_pre(tokens)
    tokens = model.blocks(tokens)
    return model.norm(tokens)
