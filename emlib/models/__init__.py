"""Models: backbone registry and factory, segmentation heads, LoRA adapters, U-Net baseline, per-domain modules."""

from __future__ import annotations

from emlib.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from emlib.models.domain import (
    DOMAINS,
    CoralProbe,
    DomainAwareHead,
    DomainFeatureNorm,
    DomainFiLM,
    DomainSegmentationModel,
    domain_index,
    running_stat_names,
)
from emlib.models.features import extract_embeddings, extract_token_maps
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
from emlib.models.weights import RANDOM_WEIGHTS_LABEL, WEIGHTS_ENV, BackboneSpec

__all__ = [
    "DOMAINS",
    "CoralProbe",
    "DomainAwareHead",
    "DomainFeatureNorm",
    "DomainFiLM",
    "DomainSegmentationModel",
    "domain_index",
    "running_stat_names",
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
    "extract_embeddings",
    "extract_token_maps",
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
