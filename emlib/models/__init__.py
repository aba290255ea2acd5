"""Models: backbone registry and factory, segmentation heads, LoRA adapters, U-Net baseline."""

from __future__ import annotations

from emlib.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_WEIGHTS_LABEL,
    WEIGHTS_ENV,
    Backbone,
    BackboneSpec,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from emlib.models.heads import (
    LinearHead,
    SegHeadDeconv,
    SegmentationModel,
    create_head,
    list_heads,
)
from emlib.models.lora import (
    LORA_TARGETS,
    LoraSettings,
    apply_lora,
    count_parameters,
    load_adapter,
    lora_state_dict,
    save_adapter,
)
from emlib.models.unet import UNet2d

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RANDOM_WEIGHTS_LABEL",
    "WEIGHTS_ENV",
    "Backbone",
    "BackboneSpec",
    "create_backbone",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
    "LinearHead",
    "SegHeadDeconv",
    "SegmentationModel",
    "create_head",
    "list_heads",
    "LORA_TARGETS",
    "LoraSettings",
    "apply_lora",
    "count_parameters",
    "load_adapter",
    "lora_state_dict",
    "save_adapter",
    "UNet2d",
]
