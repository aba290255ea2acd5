"""The registry of backbones: one :class:`~emlib.models.weights.BackboneSpec` per name, kept as data.

Every study backbone is registered here with where its weights are published (facts read from
timm 1.0.31, open_clip 3.3.0 and facebookresearch/dinov2 and dinov3; see
``../shared/reference/weights-formats.md``):

- **DINOv2** (Apache-2.0): timm's Hugging Face repo ``timm/vit_*_patch14_dinov2.lvd142m`` serves
  ``model.safetensors`` (then ``pytorch_model.bin``) in timm's key names; Meta publishes
  ``dinov2_vit*14_pretrain.pth`` (Meta's key names) at ``dl.fbaipublicfiles.com``, which
  ``torch.hub.load("facebookresearch/dinov2", ...)`` saves in ``$TORCH_HOME/hub/checkpoints``.
  Neither publishes a checksum.
- **DINOv3** (DINOv3 licence, gated): ``timm/vit_*_patch16_dinov3.lvd1689m`` serves
  ``model.safetensors`` once Meta's terms are accepted on the model page; Meta's own files
  (``dinov3_vit*16_pretrain_lvd1689m-<hash>.pth``, from its download page after the same terms)
  carry the start of their SHA-256 in the name (torch.hub's convention; the hashes are those of
  ``dinov3/hub/backbones.py``).
- **OpenCLIP** (MIT code; see the LAION model card for the weights): ``laion/CLIP-ViT-*`` serves
  ``open_clip_model.safetensors`` (tried first by open_clip) and ``open_clip_pytorch_model.bin``,
  both the whole CLIP model (image and text towers); no checksum is published.

``size_mb`` is approximate ("about"): the parameter count of the checkpoint's tensors times 4
bytes (float32), counted here from the architectures (timm / open_clip, the whole CLIP model for
OpenCLIP); the hubs' file listings show sizes of the same order.
"""

from __future__ import annotations

import warnings

from emlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # one definition, shared with the data layer
from emlib.errors import ConfigError
from emlib.models.weights import BackboneSpec

__all__ = ["register_backbone", "list_backbones", "get_backbone_spec", "TIMM_FILES", "OPEN_CLIP_FILES"]

#: Files timm's hub repos serve, in the order timm's ``load_state_dict_from_hf`` tries them.
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
#: Files open_clip's hub repos serve, in the order ``download_pretrained_from_hf`` tries them.
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_BACKBONES: dict[str, BackboneSpec] = {}  # registry key -> spec


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry under ``spec.name`` (warns when it replaces an entry).

    Parameters
    ----------
    spec : BackboneSpec
        Description of the backbone.

    Returns
    -------
    BackboneSpec
        The same ``spec``, so the call can be used as an expression.
    """
    if not isinstance(spec, BackboneSpec):
        raise ConfigError(
            f"register_backbone expects a BackboneSpec, got {type(spec).__name__}; "
            "build one with BackboneSpec(...)."
        )
    if spec.name in _BACKBONES:
        warnings.warn(f"Overwriting backbone {spec.name!r} in the registry.", stacklevel=2)
    _BACKBONES[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted.

    Examples
    --------
    >>> "dinov2_vits14" in list_backbones()
    True
    """
    return sorted(_BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The registered :class:`BackboneSpec` called ``name``.

    Raises
    ------
    ConfigError
        If ``name`` is not registered; the message lists the registered names.
    """
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown backbone {name!r}; use one of {list_backbones()}.") from None


# --------------------------------------------------------------------------------------------
# Registered backbones
# --------------------------------------------------------------------------------------------

_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_{v}14/dinov2_{v}14_pretrain.pth"
_DINOV3_PAGE = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"
_HF = "https://huggingface.co/"

# name suffix, timm size, width, depth, about MB (see the module docstring)
for _v, _size, _dim, _depth, _mb in [
    ("vits", "small", 384, 12, 88),
    ("vitb", "base", 768, 12, 346),
    ("vitl", "large", 1024, 24, 1217),
    ("vitg", "giant", 1536, 40, 4546),
]:
    register_backbone(BackboneSpec(
        name=f"dinov2_{_v}14", family="dinov2", arch=f"vit_{_size}_patch14_dinov2", pretrained_tag="lvd142m",
        patch_size=14, embed_dim=_dim, depth=_depth, mean=IMAGENET_MEAN, std=IMAGENET_STD, embedding="mean_patch",
        license="apache-2.0", weights_filename=f"dinov2_{_v}14_pretrain.pth", weights_url=_DINOV2_URL.format(v=_v),
        hf_repo=f"timm/vit_{_size}_patch14_dinov2.lvd142m", hub_files=TIMM_FILES, size_mb=_mb,
        license_url="https://github.com/facebookresearch/dinov2/blob/main/LICENSE",
    ))

# With 4 register tokens (Darcet et al., "Vision Transformers Need Registers"): timm's
# vit_*_patch14_reg4_dinov2.lvd142m, Meta's dinov2_vit*14_reg4_pretrain.pth (torch.hub `dinov2_vit*14_reg`,
# built with interpolate_offset=0.0, interpolate_antialias=True). The authors' backbone factory loads these.
for _v, _size, _dim, _depth, _mb in [
    ("vits", "small", 384, 12, 88),
    ("vitb", "base", 768, 12, 346),
    ("vitl", "large", 1024, 24, 1217),
    ("vitg", "giant", 1536, 40, 4546),
]:
    register_backbone(BackboneSpec(
        name=f"dinov2_{_v}14_reg", family="dinov2", arch=f"vit_{_size}_patch14_reg4_dinov2", pretrained_tag="lvd142m",
        patch_size=14, embed_dim=_dim, depth=_depth, mean=IMAGENET_MEAN, std=IMAGENET_STD, embedding="mean_patch",
        license="apache-2.0", weights_filename=f"dinov2_{_v}14_reg4_pretrain.pth",
        weights_url=_DINOV2_URL.format(v=_v).replace("_pretrain.pth", "_reg4_pretrain.pth"),
        hf_repo=f"timm/vit_{_size}_patch14_reg4_dinov2.lvd142m", hub_files=TIMM_FILES, size_mb=_mb,
        license_url="https://github.com/facebookresearch/dinov2/blob/main/LICENSE", meta_offset=0.0, meta_antialias=True,
    ))

# Meta's own file names carry the start of their SHA-256 (dinov3/hub/backbones.py; the authors' configs name S and L).
for _v, _size, _dim, _depth, _mb, _hash in [
    ("vits", "small", 384, 12, 86, "08c60483"),
    ("vitb", "base", 768, 12, 343, "73cec8be"),
    ("vitl", "large", 1024, 24, 1212, "8aa4cbdd"),
]:
    _repo = f"timm/vit_{_size}_patch16_dinov3.lvd1689m"
    register_backbone(BackboneSpec(
        name=f"dinov3_{_v}16", family="dinov3", arch=f"vit_{_size}_patch16_dinov3", pretrained_tag="lvd1689m",
        patch_size=16, embed_dim=_dim, depth=_depth, mean=IMAGENET_MEAN, std=IMAGENET_STD, embedding="mean_patch",
        license="dinov3-license", weights_filename=f"dinov3_{_v}16_pretrain_lvd1689m-{_hash}.pth",
        weights_url=_DINOV3_PAGE, hf_repo=_repo, hub_files=TIMM_FILES[:1], sha256=_hash, size_mb=_mb, gated=True,
        license_url=_HF + _repo,
    ))

for _name, _arch, _tag, _patch, _dim, _depth, _repo, _mb in [
    ("openclip_vitb16", "ViT-B-16", "laion2b_s34b_b88k", 16, 768, 12, "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", 598),
    ("openclip_vitl14", "ViT-L-14", "laion2b_s32b_b82k", 14, 1024, 24, "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", 1710),
    ("openclip_vith14", "ViT-H-14", "laion2b_s32b_b79k", 14, 1280, 32, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", 3944),
]:
    register_backbone(BackboneSpec(
        name=_name, family="openclip", arch=_arch, pretrained_tag=_tag, patch_size=_patch, embed_dim=_dim, depth=_depth,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,  # the authors' `preset: em`, not the CLIP statistics
        embedding="cls", license="mit", weights_url=f"{_HF}{_repo}", hf_repo=_repo, hub_files=OPEN_CLIP_FILES,
        size_mb=_mb, license_url=f"{_HF}{_repo}",
    ))

del _v, _size, _dim, _depth, _mb, _hash, _name, _arch, _tag, _patch, _repo
