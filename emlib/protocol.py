"""The authors' protocol item by item: their file, their setting, this project's, and whether they match.

Every item names the file of the authors' code that decides it (``uhlmanngroup/MicroscopyFoundationHub``,
``MFH`` below, at the commit read; ``cfusterbarcelo/shift-peft`` where the newer repository lacks the
file) and what that file does. Our side is read from the profile when the table is made, so the
appendix page cannot drift from the code: :func:`protocol_table` builds it, the book's appendix shows it.

``match`` is ``yes`` (the profile does what the authors' file does), ``selectable`` (the authors' files
disagree with each other or with the paper; the profile follows the paper and the other value is one
option away; ``how`` says which), ``no`` (not reproduced yet, or another profile; ``how`` says what is
missing) or ``unclear`` (which version of the authors' code the paper ran is not known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from emlib.config import Profile, get_profile

__all__ = ["ProtocolItem", "PROTOCOL_ITEMS", "protocol_table", "MATCHES"]

#: The values of the ``match`` column.
MATCHES: tuple[str, ...] = ("yes", "selectable", "no", "unclear")

_MFH = "MFH"


@dataclass(frozen=True)
class ProtocolItem:
    """One protocol item.

    Attributes
    ----------
    item : str
        What is decided (loss, backbone, batch size, ...).
    authors_file : str
        Where the authors' code decides it (repository-relative path, commit when read at one).
    authors_setting : str
        What that file does, in words.
    ours : callable
        ``ours(profile) -> str``: the profile's setting, read from it.
    match : callable
        ``match(profile) -> str``: one of :data:`MATCHES`.
    how : str, default=''
        For ``selectable``: the option that gives the authors' value; for ``no``/``unclear``: why.
    """

    item: str
    authors_file: str
    authors_setting: str
    ours: Callable[[Profile], str]
    match: Callable[[Profile], str]
    how: str = ""


def _yes_if(condition: Callable[[Profile], bool], otherwise: str = "no") -> Callable[[Profile], str]:
    return lambda p: "yes" if condition(p) else otherwise


def _batch(p: Profile) -> str:
    cases = [("dinov2_vitl14_reg", "lucchi_pp"), ("dinov2_vitl14_reg", "paired"), ("openclip_vitl14", "lucchi_pp"),
             ("openclip_vitl14", "vnc"), ("openclip_vitl14", "paired")]
    sizes = {case: p.run_overrides(*case).get("batch_size", p.base.batch_size) for case in cases}
    return ", ".join(f"{b.split('_')[0]} {t}: {n}" for (b, t), n in sizes.items())


_AUTHORS_BATCH = "dinov2 lucchi_pp: 1, dinov2 paired: 2, openclip lucchi_pp: 2, openclip vnc: 4, openclip paired: 2"

PROTOCOL_ITEMS: tuple[ProtocolItem, ...] = (
    ProtocolItem(
        "segmentation loss", f"{_MFH} src/dino_peft/trainers/seg_trainer.py (build_criterion)",
        "monai.losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=True): Dice per image, both classes",
        lambda p: p.base.loss, _yes_if(lambda p: p.base.loss == "monai_dice"),
        "emlib.losses.monai_dice_loss, tested equal to MONAI 1.6.1 to 1e-6 (padded batches included)"),
    ProtocolItem(
        "DINOv2 variant", "cfusterbarcelo/shift-peft backbone_dinov2.py (NAME_MAP); MFH's backbone_dinov2.py is not in the index",
        "torch.hub dinov2_vit*14_reg (4 registers)",
        lambda p: p.base.backbone, _yes_if(lambda p: p.base.backbone.endswith("_reg")),
        "the plain model: --backbone dinov2_vitl14"),
    ProtocolItem(
        "DINOv2 position-embedding resize", "facebookresearch/dinov2 dinov2/hub/backbones.py (torch.hub, as the authors load it)",
        "Meta's interpolate_pos_encoding (registers: offset 0.0, antialias)",
        lambda p: p.base.pos_interpolation, _yes_if(lambda p: p.base.pos_interpolation == "meta")),
    ProtocolItem(
        "OpenCLIP patch tokens", f"{_MFH} src/dino_peft/backbones/openclip_adapter.py @ f9fd0b0",
        "manual ViT path ending in ln_post (older versions, ea5f9ee / 6f9cd57, tried forward_intermediates first)",
        lambda p: "ln_post applied (emlib.models.backbones)", lambda p: "unclear",
        "the paper's runs may predate f9fd0b0; the older forward_intermediates path is not implemented"),
    ProtocolItem(
        "normalisation", f"{_MFH} configs (preset: em)", "ImageNet mean and std for every backbone",
        lambda p: "ImageNet mean and std (BackboneSpec.mean/std)", lambda p: "yes"),
    ProtocolItem(
        "input size", f"{_MFH} configs/cluster/EM/*.yaml (img_size)", "longest edge 1022, sides floored to the patch size",
        lambda p: f"long_edge={p.base.long_edge}, crop={p.base.crop}",
        _yes_if(lambda p: p.base.long_edge == 1022 and p.base.crop is None)),
    ProtocolItem(
        "optimiser", f"{_MFH} configs/defaults.yaml @ 0f683bf", "lr 5e-5, weight decay 1e-4, gradient clipping 1.0",
        lambda p: f"lr {p.base.lr:g}, weight decay {p.base.weight_decay:g}, clipping {p.base.grad_clip:g}",
        _yes_if(lambda p: (p.base.lr, p.base.weight_decay, p.base.grad_clip) == (5e-5, 1e-4, 1.0))),
    ProtocolItem(
        "schedule", f"{_MFH} configs/defaults.yaml @ 0f683bf", "at most 1000 epochs, early stopping with patience 20, no AMP",
        lambda p: f"{p.base.epochs} epochs, patience {p.base.patience}, amp={p.base.amp}",
        _yes_if(lambda p: (p.base.epochs, p.base.patience, p.base.amp) == (1000, 20, False))),
    ProtocolItem(
        "validation split", f"{_MFH} src/dino_peft/trainers/seg_trainer.py",
        "n_val = max(1, round(0.1 n)), torch.randperm with manual_seed(42) over the training list",
        lambda p: f"val_fraction {p.base.val_fraction}, val_seed {p.base.val_seed}",
        _yes_if(lambda p: (p.base.val_fraction, p.base.val_seed) == (0.1, 42))),
    ProtocolItem(
        "batch sizes", f"{_MFH} configs/cluster/EM/{{lucchi,droso,paired}}_*_cluster.yaml, configs/defaults.yaml",
        _AUTHORS_BATCH, _batch, _yes_if(lambda p: _batch(p) == _AUTHORS_BATCH),
        "DINOv3 Lucchi++ frozen: 4 in lucchi_dinov3_head_cluster.yaml, 2 in the frozen rerun script; the profile uses 1"),
    ProtocolItem(
        "LoRA", f"{_MFH} configs/defaults.yaml; configs/cluster/EM/paired_dinov2_cluster.yaml",
        "rank 16, alpha 32 on attn.qkv and attn.proj; the paired DINOv2 config records rank 8 / alpha 16 (an implicit fallback)",
        lambda p: f"rank {p.base.lora.rank}, alpha {p.base.lora.alpha:g}, targets {', '.join(p.base.lora.targets)}",
        lambda p: "selectable" if (p.base.lora.rank, p.base.lora.alpha) == (16, 32) else "no",
        "the authors' files disagree; the profile follows defaults.yaml, rank 8 / alpha 16 is "
        "RunConfig(lora=LoraSettings(rank=8, alpha=16))"),
    ProtocolItem(
        "seeds", f"{_MFH} slurm grids (SEED empty) and configs/defaults.yaml", "5 repeats; the DINO grids ran every repeat with seed 0",
        lambda p: f"seeds {list(p.seeds)}", lambda p: "selectable" if len(p.seeds) == 5 else "no",
        "the profile follows the paper's 5 repeats with 5 seeds; the grids' seed 0 is --seed 0 (one run folder: "
        "the same config is the same run)"),
    ProtocolItem(
        "paired training set", f"{_MFH} scripts/data/compose_em_datasets.py",
        "Lucchi++ images and labels zipped by sorted file name: 2 of 165 pairs right (emlib data audit)",
        lambda p: f"pairing {p.base.pairing} (published: --pairing published)", lambda p: "selectable",
        "emlib grid --pairing published; chapter 5b trains on both"),
    ProtocolItem(
        "paired scoring", f"{_MFH} scripts/eval_em_seg.py", "IoU_fg pooled over the composed test folder (Lucchi++ and VNC test slices)",
        lambda p: "every run: each test set alone and test_set='mixed', against true and published labels", lambda p: "yes"),
    ProtocolItem(
        "IoU_fg", f"{_MFH} scripts/eval_em_seg.py", "TP, FP, FN pooled over the whole test set, then IoU",
        lambda p: "pooled counts (emlib.metrics.PooledCounts)", lambda p: "yes"),
    ProtocolItem(
        "Fréchet distance", f"{_MFH} scripts/run_domain_analysis.py @ 0f683bf (compute_fid_from_features), "
        "configs/cluster/EM/paired_feat_analysis_cluster.yaml, src/dino_peft/analysis/feature_extractor.py",
        "pytorch_fid's formula on raw mean-patch embeddings, frozen and of a paired-LoRA checkpoint; images of the "
        "composed test folder (165 Lucchi++ + 3 VNC)",
        lambda p: "both image sets: Lucchi++ test against VNC stack1 (20 slices) and against the 3 VNC test slices "
                  "(emlib.IMAGE_SETS, chapter 6)",
        lambda p: "selectable",
        "latent_diagnostics(settings, image_set='authors'); the authors' extractor zero-pads the Lucchi++ slices that "
        "share a batch with VNC ones (pad_collate), which is not repeated"),
    ProtocolItem(
        "Fig. 2 baselines", f"{_MFH} scripts/analysis/fancy_plot.py", "9 literature IoU_fg values on Lucchi++",
        lambda p: "emlib.paper.FIG2_BASELINES", lambda p: "yes"),
)


def protocol_table(profile: Profile | str = "paper") -> pd.DataFrame:
    """Every item of :data:`PROTOCOL_ITEMS` against ``profile``.

    Parameters
    ----------
    profile : Profile or str, default='paper'

    Returns
    -------
    DataFrame
        One row per item: ``item, authors_file, authors_setting, ours, match, how``.

    Examples
    --------
    >>> table = protocol_table("paper")
    >>> table.set_index("item").loc["segmentation loss", "match"]
    'yes'
    >>> protocol_table("smoke").set_index("item").loc["segmentation loss", "match"]
    'no'
    """
    prof = get_profile(profile)
    rows = [{"item": it.item, "authors_file": it.authors_file, "authors_setting": it.authors_setting,
             "ours": it.ours(prof), "match": it.match(prof), "how": it.how} for it in PROTOCOL_ITEMS]
    return pd.DataFrame(rows)
