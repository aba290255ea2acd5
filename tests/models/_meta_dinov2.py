"""Test reference: the forward path of Meta's own DINOv2 model class, re-written from its public source.

Source read: facebookresearch/dinov2 at commit b8931f7, ``dinov2/models/vision_transformer.py``
(``DinoVisionTransformer``: ``interpolate_pos_encoding``, ``prepare_tokens_with_masks``,
``forward_features``), ``dinov2/layers/{patch_embed,attention,block,layer_scale,mlp}.py`` and the
hub constructor ``dinov2/hub/backbones.py`` (``img_size=518, patch_size=14, init_values=1.0,
ffn_layer="mlp", block_chunks=0, num_register_tokens=0, interpolate_antialias=False,
interpolate_offset=0.1``). Only what the ViT-S/B/L hub models run at inference is kept (no masks,
no drop-path, no xFormers: the attention is Meta's plain ``Attention`` arithmetic). Module and
parameter names are Meta's, so a state dict in Meta's key names (``*_pretrain.pth``) loads with
``strict=True``. This lives in the tests only: emlib does not vendor Meta's package.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, C), norm = Identity


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class MetaDinoViT(nn.Module):
    """``DinoVisionTransformer`` as built by Meta's hub, inference path only.

    The plain hub models: ``num_register_tokens=0, interpolate_offset=0.1, interpolate_antialias=False``;
    those with registers (``dinov2_vit*14_reg``): ``4, 0.0, True``.
    """

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, patch_size: int = 14, img_size: int = 518,
                 interpolate_offset: float = 0.1, interpolate_antialias: bool = False,
                 num_register_tokens: int = 0) -> None:
        super().__init__()
        self.num_register_tokens = num_register_tokens
        if num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.patch_size = patch_size
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def interpolate_pos_encoding(self, x: torch.Tensor, w: int, h: int) -> torch.Tensor:
        # Meta's code, variable names kept: ``w, h`` are the input's rows and columns (B, nc, w, h = x.shape).
        previous_dtype = x.dtype
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos_embed = pos_embed[:, 0]
        patch_pos_embed = pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_size
        h0 = h // self.patch_size
        M = int(math.sqrt(N))
        assert N == M * M
        kwargs = {}
        if self.interpolate_offset:
            sx = float(w0 + self.interpolate_offset) / M
            sy = float(h0 + self.interpolate_offset) / M
            kwargs["scale_factor"] = (sx, sy)
        else:
            kwargs["size"] = (w0, h0)
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=self.interpolate_antialias,
            **kwargs,
        )
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        _, _, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        if self.num_register_tokens:
            x = torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
        return x

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        x_norm = self.norm(x)
        return {"x_norm_clstoken": x_norm[:, 0], "x_norm_patchtokens": x_norm[:, 1 + self.num_register_tokens:]}


def timm_to_meta_state_dict(timm_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm DINOv2 (MLP FFN) state dict under Meta's key names.

    The inverse of timm's ``checkpoint_filter_fn`` for these models, which drops Meta's
    ``mask_token`` (unused at inference) and, with registers, renames ``register_tokens`` to
    ``reg_token`` and adds the class entry of Meta's positional embedding to the class token
    (timm's model has no class position). The class entry is split off here as half the class
    token, so the sum is exact and the reference adds a position the timm model folded in.
    """
    sd = {k: v.clone() for k, v in timm_sd.items()}
    sd["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    if "reg_token" in sd:
        sd["register_tokens"] = sd.pop("reg_token")
        half = sd["cls_token"] / 2  # halving and doubling are exact in floating point
        sd["cls_token"] = half
        sd["pos_embed"] = torch.cat([half.reshape(1, 1, -1), sd["pos_embed"]], dim=1)
    return sd


def meta_reference(timm_model: nn.Module) -> MetaDinoViT:
    """Meta's model class carrying exactly the weights of a timm DINOv2 ``VisionTransformer``."""
    dim = timm_model.embed_dim
    registers = 0 if timm_model.reg_token is None else timm_model.reg_token.shape[1]
    ref = MetaDinoViT(embed_dim=dim, depth=len(timm_model.blocks), num_heads=timm_model.blocks[0].attn.num_heads,
                      patch_size=timm_model.patch_embed.patch_size[0],
                      img_size=timm_model.patch_embed.grid_size[0] * timm_model.patch_embed.patch_size[0],
                      num_register_tokens=registers, interpolate_offset=0.0 if registers else 0.1,
                      interpolate_antialias=bool(registers))
    ref.load_state_dict(timm_to_meta_state_dict(timm_model.state_dict()), strict=True)
    return ref.eval()
