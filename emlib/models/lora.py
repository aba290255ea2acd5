"""LoRA adapters on the attention of every transformer block.

The authors' policy (``vit_attention_only``, ``layer_selection: all``; ``models/lora.py`` in
``uhlmanngroup/DINO-EM-PEFT``) wraps the fused ``qkv`` projection and the attention output
projection of **every** block with ``y = W x + (alpha / r) B A x``, A Kaiming-uniform
(``a = sqrt 5``), B zero, and freezes everything else in the backbone. :func:`apply_lora` does
the same:

- timm ViTs (DINOv2, DINOv3) use peft: the modules ``blocks.<i>.attn.qkv`` and
  ``blocks.<i>.attn.proj`` are matched by a full-name regular expression. A plain suffix such
  as ``"proj"`` would also wrap the patch-embedding convolution ``patch_embed.proj`` (peft
  matches suffixes), adding parameters the authors do not train.
- open_clip ViTs (OpenCLIP) use ``torch.nn.MultiheadAttention``, whose forward reads
  ``in_proj_weight`` and ``out_proj.weight`` directly, so a wrapped ``out_proj`` module would
  never be called. peft's LoRA ``MultiheadAttention`` layer handles this by merging the update
  into the weights and un-merging it after every forward pass, which rewrites the frozen weights
  (they drift by rounding error, about 1e-9 per step) and re-registers them as new
  ``Parameter`` objects. emlib instead adds the update functionally with a
  ``torch.nn.utils.parametrize`` parametrisation, ``W -> W + (alpha / r) B A``, the authors'
  merged ``delta W`` without touching ``W``: the frozen weights stay bit-identical. The merged
  form cannot apply dropout to the LoRA input, so OpenCLIP needs ``dropout=0`` (the paper's value).

Optionally the MLP can be wrapped too (targets ``'mlp.fc1'``, ``'mlp.fc2'``; open_clip's
``mlp.c_fc``/``mlp.c_proj``), which the paper does not use.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from emlib.config import LORA_TARGETS, LoraSettings
from emlib.errors import ConfigError, WeightsError
from emlib.models.backbones import Backbone

__all__ = [
    "LoraSettings",
    "apply_lora",
    "check_lora_rank",
    "count_parameters",
    "lora_state_dict",
    "save_adapter",
    "load_adapter",
    "LORA_TARGETS",
]

_ADAPTER = "default"  # peft adapter name


class _LoraDelta(nn.Module):
    """Parametrisation ``W -> W + scale * B @ A`` of a weight of shape ``(out, in)``."""

    def __init__(self, weight: torch.Tensor, rank: int, scale: float) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        kw = {"device": weight.device, "dtype": weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft
        self.scale = scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A)


def _timm_targets(backbone: Backbone, settings: LoraSettings) -> tuple[str, list[str]]:
    """peft ``target_modules`` regex and the module names that must end up wrapped."""
    pattern = r"blocks\.\d+\.(" + "|".join(re.escape(t) for t in settings.targets) + r")"
    expected = [f"blocks.{i}.{t}" for i in range(backbone.spec.depth) for t in settings.targets]
    return pattern, expected


def _apply_lora_timm(backbone: Backbone, settings: LoraSettings) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    pattern, expected = _timm_targets(backbone, settings)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=pattern,
        bias="none",
        init_lora_weights=True,  # A Kaiming-uniform (a=sqrt 5), B zeros: starts as the identity
    )
    inject_adapter_in_model(config, backbone.model, adapter_name=_ADAPTER)
    wrapped = {
        name
        for name, module in backbone.model.named_modules()
        if isinstance(getattr(module, "lora_A", None), nn.ModuleDict) and _ADAPTER in module.lora_A
    }
    _check_wrapped(backbone, wrapped, expected)
    # timm attention with separate q/v biases (DINOv3 *_qkvb models) calls
    # F.linear(x, qkv.weight, bias) and would bypass the wrapped qkv module; make it call the
    # module and add the bias afterwards (same result).
    for module in backbone.model.modules():
        if getattr(module, "q_bias", None) is not None and hasattr(module, "qkv_bias_separate"):
            module.qkv_bias_separate = True


def _apply_lora_openclip(backbone: Backbone, settings: LoraSettings) -> None:
    from torch.nn.utils import parametrize

    if settings.dropout != 0.0:
        raise ConfigError(
            f"{backbone.name} merges LoRA into its attention weights, which cannot apply "
            f"dropout={settings.dropout}; use LoraSettings(dropout=0.0)."
        )
    attn = [t for t in settings.targets if t.startswith("attn.")]
    if len(attn) == 1:
        raise ConfigError(
            f"{backbone.name} uses torch MultiheadAttention, where LoRA wraps qkv and proj "
            f"together; use targets with both 'attn.qkv' and 'attn.proj', got {settings.targets!r}."
        )
    blocks = backbone.model.transformer.resblocks
    if len(blocks) != backbone.spec.depth:
        raise ConfigError(
            f"{backbone.name} has {len(blocks)} blocks but its spec says depth="
            f"{backbone.spec.depth}; fix the spec."
        )
    for block in blocks:
        params: list[tuple[nn.Module, str]] = []
        if attn:
            if not isinstance(block.attn, nn.MultiheadAttention) or block.attn.in_proj_weight is None:
                raise ConfigError(
                    f"{backbone.name} blocks do not use a fused nn.MultiheadAttention; "
                    "register a standard open_clip ViT instead."
                )
            params += [(block.attn, "in_proj_weight"), (block.attn.out_proj, "weight")]
        if "mlp.fc1" in settings.targets:
            params.append((block.mlp.c_fc, "weight"))
        if "mlp.fc2" in settings.targets:
            params.append((block.mlp.c_proj, "weight"))
        for module, pname in params:
            weight = getattr(module, pname)
            parametrize.register_parametrization(
                module, pname, _LoraDelta(weight, settings.rank, settings.scale)
            )


def _check_wrapped(backbone: Backbone, wrapped: set[str], expected: list[str]) -> None:
    missing = [n for n in expected if n not in wrapped]
    extra = sorted(wrapped - set(expected))
    if missing or extra:
        raise ConfigError(
            f"LoRA on {backbone.name} wrapped {len(wrapped)} modules instead of the "
            f"{len(expected)} expected (missing {missing[:3]}, unexpected {extra[:3]}); "
            "fix the spec's depth or the targets."
        )


def check_lora_rank(settings: LoraSettings, width: int, backbone: str) -> None:
    """One sentence when ``settings.rank`` exceeds the backbone's width ``width`` (its ``embed_dim``).

    Every map LoRA can adapt (:data:`~emlib.config.LORA_TARGETS`) has ``width`` on one side, so its
    update has rank at most ``width``; a larger rank only allocates ``rank x (in + out)`` numbers per map.

    Examples
    --------
    >>> check_lora_rank(LoraSettings(rank=512), 384, "dinov2_vits14")
    Traceback (most recent call last):
    emlib.errors.ConfigError: LoRA rank=512 is larger than the width 384 of dinov2_vits14, ...
    """
    if settings.rank > width:
        raise ConfigError(
            f"LoRA rank={settings.rank} is larger than the width {width} of {backbone}, so its adapters cannot be "
            f"built (their rank is at most {width}); use LoraSettings(rank=N) with N in [1, {width}] (the paper: 16)"
        )


def apply_lora(backbone: Backbone, settings: LoraSettings | None = None) -> Backbone:
    """Inject LoRA adapters into every block of ``backbone`` and freeze all its base weights.

    Parameters
    ----------
    backbone : Backbone
        Changed in place.
    settings : LoraSettings, default=None
        ``None`` means ``LoraSettings()`` (r=16, alpha=32, qkv + proj).

    Returns
    -------
    Backbone
        The same object; only its LoRA A/B matrices have ``requires_grad=True`` and
        ``backbone.lora_settings`` holds ``settings``.

    Raises
    ------
    ConfigError
        If ``backbone`` already has adapters, the rank exceeds its width (:func:`check_lora_rank`), the
        targets do not match every block, or (OpenCLIP) ``dropout > 0`` or only one of the two attention targets.

    Examples
    --------
    >>> from emlib.models.backbones import create_backbone
    >>> bb = apply_lora(create_backbone("dinov2_vits14", pretrained=False))
    >>> count_parameters(bb)["trainable"]
    442368
    """
    if not isinstance(backbone, Backbone):
        raise ConfigError(
            f"apply_lora expects an emlib Backbone, got {type(backbone).__name__}; "
            "build it with create_backbone()."
        )
    if backbone.lora_settings is not None:
        raise ConfigError(
            f"{backbone.name} already has LoRA adapters ({backbone.lora_settings}); "
            "apply LoRA once to a fresh backbone."
        )
    settings = LoraSettings() if settings is None else settings
    check_lora_rank(settings, backbone.spec.embed_dim, backbone.name)  # before anything is allocated
    if backbone.spec.library == "timm":
        _apply_lora_timm(backbone, settings)
    else:
        _apply_lora_openclip(backbone, settings)
    for name, param in backbone.named_parameters():
        param.requires_grad = "lora_" in name
    backbone.lora_settings = settings
    return backbone


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts of ``module``.

    Returns
    -------
    dict
        ``{"trainable": int, "total": int}``.
    """
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    return {"trainable": trainable, "total": total}


def lora_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The LoRA A/B tensors of ``backbone`` (keys relative to ``backbone.model``), detached on CPU."""
    return {
        k: v.detach().cpu().contiguous()
        for k, v in backbone.model.state_dict().items()
        if "lora_" in k
    }


def save_adapter(backbone: Backbone, path: str | os.PathLike[str]) -> Path:
    """Write the LoRA weights and settings of ``backbone`` to a ``.safetensors`` file.

    Parameters
    ----------
    backbone : Backbone
        A backbone that went through :func:`apply_lora`.
    path : path-like
        Output file; parent folders are created.

    Returns
    -------
    Path
        The file written. Its metadata holds the backbone name and the :class:`LoraSettings`.
    """
    from safetensors.torch import save_file

    if backbone.lora_settings is None:
        raise ConfigError(
            f"{backbone.name} has no LoRA adapters to save; call apply_lora(backbone) first."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "emlib-lora-v1",
        "backbone": backbone.name,
        "settings": json.dumps(asdict(backbone.lora_settings)),
    }
    save_file(lora_state_dict(backbone), str(path), metadata=meta)
    return path


def load_adapter(backbone: Backbone, path: str | os.PathLike[str]) -> Backbone:
    """Load LoRA weights saved by :func:`save_adapter` into ``backbone``.

    A backbone without adapters gets them first (with the settings stored in the file).

    Parameters
    ----------
    backbone : Backbone
        Same registered name as the saved one; changed in place.
    path : path-like
        A file written by :func:`save_adapter`.

    Returns
    -------
    Backbone
        The same object, with the saved adapters.

    Raises
    ------
    WeightsError
        Missing file, another backbone's adapter, other LoRA settings, or tensors that do not fit.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"LoRA adapter file {path} does not exist; check the path or save one with save_adapter()."
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
        settings_dict = json.loads(meta["settings"])
        settings_dict["targets"] = tuple(settings_dict["targets"])
        settings = LoraSettings(**settings_dict)
        saved_for = meta["backbone"]
    except Exception as err:  # noqa: BLE001 - any unreadable file becomes one sentence
        raise WeightsError(
            f"{path} is not an emlib LoRA adapter file ({type(err).__name__}: {err}); "
            "write it with save_adapter()."
        ) from err
    if saved_for != backbone.name:
        raise WeightsError(
            f"adapter {path} was saved for {saved_for}, not {backbone.name}; "
            f"load it into create_backbone({saved_for!r})."
        )
    if backbone.lora_settings is None:
        apply_lora(backbone, settings)
    elif backbone.lora_settings != settings:
        raise WeightsError(
            f"adapter {path} has settings {settings} but {backbone.name} has "
            f"{backbone.lora_settings}; load it into a backbone without adapters."
        )
    own = lora_state_dict(backbone)
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in tensors if k in own and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"adapter {path} does not fit {backbone.name} (missing {missing[:2]}, "
            f"unexpected {unexpected[:2]}, wrong shape {wrong[:2]}); save it again from the "
            "same backbone and settings."
        )
    backbone.model.load_state_dict(tensors, strict=False)
    return backbone
