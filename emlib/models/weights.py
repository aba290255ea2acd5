"""What a backbone is built from: its spec, and where its weights come from.

A :class:`BackboneSpec` is the metadata of one pretrained backbone, kept as data: the library
and architecture that build it, its patch size and width, the normalisation it expects, and
where its weights are published (hub tag, file name, download URL, licence). The registry of
specs and the factory live in :mod:`emlib.models.backbones`; this module only knows how to get
weights for a spec:

- random weights (:data:`RANDOM_WEIGHTS_LABEL`, tests and smoke runs only);
- a local file, given explicitly or found as ``$EMLIB_WEIGHTS/<spec.weights_filename>``
  (:data:`WEIGHTS_ENV`): timm/Meta ``.pth``/``.safetensors`` for the DINO families, an open_clip
  checkpoint or a visual-tower state dict for OpenCLIP;
- the library's own hub (timm / open_clip, which needs a network and, for DINOv3, accepted
  licence terms).

Every backbone records a label of where its weights came from, written into every run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from emlib.errors import ConfigError, WeightsError

__all__ = ["BackboneSpec", "WEIGHTS_ENV", "RANDOM_WEIGHTS_LABEL", "local_weights_file"]

WEIGHTS_ENV = "EMLIB_WEIGHTS"
RANDOM_WEIGHTS_LABEL = "random weights"

_FAMILIES = ("dinov2", "dinov3", "openclip")
_EMBEDDINGS = ("mean_patch", "cls")


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
    weights_filename : str
        Name of the weights file looked for in ``$EMLIB_WEIGHTS``.
    weights_url : str
        Where to download that file by hand (shown in error messages).

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
    weights_filename: str
    weights_url: str

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


def _build_random(spec: BackboneSpec) -> nn.Module:
    """The architecture of ``spec`` with random weights (no network access)."""
    if spec.library == "timm":
        import timm

        return timm.create_model(
            spec.arch, pretrained=False, dynamic_img_size=True, num_classes=0
        )
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(spec.arch)
    if cfg is None:
        raise ConfigError(
            f"open_clip has no model config {spec.arch!r} for {spec.name}; "
            "fix the spec's arch (see open_clip.list_models())."
        )
    return _build_vision_tower(
        cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=cfg.get("quick_gelu", False)
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``torch.save`` file, unwrapped from common containers."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise TypeError(f"file holds a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_from_file(spec: BackboneSpec, path: Path) -> nn.Module:
    """Build ``spec`` and load the weights in ``path`` (strict; raises on any mismatch)."""
    if spec.library == "timm":
        import timm

        # timm applies its checkpoint filter, so timm files and Meta's original
        # DINOv2/DINOv3 .pth files both load.
        return timm.create_model(
            spec.hub_id,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path)},
            dynamic_img_size=True,
            num_classes=0,
        )
    model = _build_random(spec)
    sd = _read_state_dict(path)
    if any(k.startswith("visual.") for k in sd):  # a whole CLIP checkpoint: keep the image tower
        sd = {k.removeprefix("visual."): v for k, v in sd.items() if k.startswith("visual.")}
    model.load_state_dict(sd, strict=True)
    return model


def _load_from_hub(spec: BackboneSpec) -> nn.Module:
    """Download (or read from the library's cache) the pretrained weights of ``spec``."""
    if spec.library == "timm":
        import timm

        return timm.create_model(
            spec.hub_id, pretrained=True, dynamic_img_size=True, num_classes=0
        )
    import open_clip

    clip = open_clip.create_model(spec.arch, pretrained=spec.pretrained_tag)
    return clip.visual


def _short_reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def local_weights_file(name: str, spec: BackboneSpec, weights: str | os.PathLike[str] | None) -> Path | None:
    """The local file the pretrained weights of ``spec`` come from, or None when they come from the hub.

    ``weights`` when given (it must exist: WeightsError otherwise), else
    ``$EMLIB_WEIGHTS/<spec.weights_filename>`` when that file exists. ``name`` is used in messages.
    """
    env_dir = os.environ.get(WEIGHTS_ENV)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} for {name} does not exist; check the path or download "
                f"{spec.weights_url} there."
            )
        return path
    if env_dir and (Path(env_dir).expanduser() / spec.weights_filename).is_file():
        return Path(env_dir).expanduser() / spec.weights_filename
    return None


def _load_pretrained(name: str, spec: BackboneSpec, weights: str | os.PathLike[str] | None) -> tuple[nn.Module, str]:
    """Pretrained weights of ``spec`` and their label: ``weights`` → ``$EMLIB_WEIGHTS`` → the hub.

    ``name`` is the registry name asked for (used in messages). Raises WeightsError when no
    weights are found or a file does not fit the architecture.
    """
    env_dir = os.environ.get(WEIGHTS_ENV)
    path = local_weights_file(name, spec, weights)
    if path is not None:
        try:
            model = _load_from_file(spec, path)
        except Exception as err:  # noqa: BLE001 - any failure becomes one sentence
            raise WeightsError(
                f"weights file {path} does not fit {name} ({spec.hub_id}): {_short_reason(err)}; "
                f"download {spec.weights_url} and pass it as weights=PATH."
            ) from err
        label = f"pretrained ({spec.pretrained_tag}) from {path}"
    else:
        looked = (
            Path(env_dir).expanduser() / spec.weights_filename
            if env_dir
            else f"${WEIGHTS_ENV}/{spec.weights_filename} (${WEIGHTS_ENV} is not set)"
        )
        try:
            model = _load_from_hub(spec)
        except Exception as err:  # noqa: BLE001 - no network, gated repo, missing hub package ...
            raise WeightsError(
                f"could not load pretrained weights for {name}: no file at {looked} and the hub "
                f"download of {spec.hub_id} failed ({_short_reason(err)}); download "
                f"{spec.weights_url} and pass weights=PATH or put it in "
                f"${WEIGHTS_ENV}/{spec.weights_filename}, or use pretrained=False for random "
                "weights (tests only)."
            ) from err
        label = f"pretrained ({spec.pretrained_tag})"
    return model, label
