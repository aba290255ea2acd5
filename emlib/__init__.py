"""emlib: are vision foundation models foundational for EM segmentation?

A small library behind the study companion book that reproduces and extends
Fuster-Barceló & Uhlmann (LMRL @ ICLR 2026, arXiv:2602.08505). Everything a chapter or a user
needs is importable from here (``from emlib import fit, evaluate_both, run_grid``); the
subpackages hold the same names by floor, bottom to top:

==========================  ===============================================================
``errors``, ``config``      exceptions; RunConfig, Profile and the profiles smoke/quick/paper
``device``, ``losses``,     where models run; losses and the remedies' loss terms; IoU/Dice;
``metrics``, ``stitching``  sliding-window prediction
``data``                    Lucchi++ and VNC: fetch, read, transforms, Datasets, input alignment
``models``                  backbones, weights, heads, LoRA, U-Net, per-domain modules
``diagnostics``             Fréchet distance, probes, token statistics (arrays only)
``plugins``, ``cache``,     the plug-in points of training (the remedies); the feature store of
``featurestore``            frozen backbones and its keys
``train``, ``evaluation``,  the paper's loop; evaluation; slice embeddings
``latents``
``grid``                    the one runner and its results tables, launchers, the remedy grid
``chapters``                what the notebooks call: settings, backbones side by side, page facts
``paper``, ``protocol``     the paper's claims and the comparison with our runs; the authors' protocol item by item
``viz``, ``book``, ``cli``  figures; the book's build and check; the ``emlib`` command
==========================  ===============================================================

Names are imported on first use (PEP 562), so ``import emlib`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from emlib.paths import pin_env_paths

__version__ = "0.1.0"

# $EMLIB_DATA, $EMLIB_WEIGHTS and $EMLIB_CACHE_DIR mean what they meant where this process was started: made
# absolute against its cwd now, before anything changes folder, and so exported to every subprocess it starts.
pin_env_paths()

#: Public name -> the module that defines it (one place per concept).
_API: dict[str, tuple[str, ...]] = {
    "emlib.errors": ("EmlibError", "ConfigError", "DataError", "ChecksumError", "WeightsError", "ShapeError", "StorageError"),
    "emlib.config": (
        "RunConfig", "LoraSettings", "Profile", "PROFILES", "TRAIN_SETS", "REGIMES", "TEST_SETS", "get_profile",
        "list_profiles", "grid_configs", "PAIRINGS", "SCORED_TEST_SETS", "MIXED_TEST", "TEST_LABELS",
    ),
    "emlib.device": ("resolve_device",),
    "emlib.losses": ("segmentation_loss", "dice_loss", "coral_loss", "patch_features", "foreground_weights", "domain_weighted_loss"),
    "emlib.metrics": ("PooledCounts",),
    "emlib.data": (
        "DATASETS", "VNC_TEST_SLICES", "IMAGENET_MEAN", "IMAGENET_STD", "Volume", "load_volume", "read_volume",
        "fetch_dataset", "verify_dataset", "dataset_summary", "dataset_dir", "data_root", "get_source", "list_datasets",
        "normalize", "protocol_size", "resize_slice", "select_test_slices", "center_region", "pad_collate",
        "validation_split", "PUBLISHED_SCRIPT", "pairing_audit", "pairing_table",
    ),
    "emlib.data.alignment": (
        "ReferenceStats", "intensity_reference", "reference_for", "standardise_intensity", "grey_cdf", "histogram_match",
        "clahe", "clahe_available", "pixel_scale", "resample_stack", "align_volume",
    ),
    "emlib.models": (
        "Backbone", "create_backbone", "get_backbone_spec", "list_backbones", "create_head", "list_heads", "SegHeadDeconv",
        "SegmentationModel", "UNet2d", "apply_lora", "count_parameters", "DOMAINS", "domain_index", "DomainFeatureNorm",
        "DomainFiLM", "DomainAwareHead", "DomainSegmentationModel", "extract_embeddings", "extract_token_maps",
    ),
    "emlib.models.hub": ("WeightsSource", "find_weights", "fetch_weights", "weights_status"),
    "emlib.lab": ("LabContents", "pack_lab", "unpack_lab"),
    "emlib.diagnostics": (
        "frechet_distance", "frechet_distance_from_stats", "bootstrap_frechet", "linear_probe", "protocol_probe",
        "pca_embed", "patch_pca_rgb", "token_separability", "downsample_mask_to_grid", "domain_report",
    ),
    "emlib.cache": ("FeatureCache", "feature_store", "clear_feature_stores"),
    "emlib.plugins": ("plugins_for", "training_foreground_fractions"),
    "emlib.featurestore": ("tile_store", "window_store"),
    "emlib.train": ("TrainedModel", "BuiltModel", "fit", "load_trained", "build_model", "build_train_dataset"),
    "emlib.evaluation": ("EvalResult", "evaluate", "evaluate_both", "is_degenerate", "scored_rows"),
    "emlib.latents": (
        "EmbeddingSet", "dataset_embeddings", "run_embeddings", "dataset_tokens", "load_backbone_for_latents",
        "latent_report", "token_separability_table", "transfer_auroc", "IMAGE_SETS",
    ),
    "emlib.grid.runner": ("run_one", "run_configs", "run_grid", "run_folder", "read_results", "grid_command"),
    "emlib.grid.published": ("PublishedResults", "PublishedNote", "export_results", "read_published", "provenance_note"),
    "emlib.grid.remedies": (
        "REMEDIES", "alignment_configs", "frozen_only_remedies", "left_out_note", "remedy_config", "run_alignment_grid",
        "alignment_summary", "remedy_latent_space", "remedy_latents",
    ),
    "emlib.chapters.settings": (
        "ChapterSettings", "chapter_settings", "ensure_data", "limit_cpu_threads", "physical_extent_table",
        "token_grid_table", "grid_dir", "chapter_configs", "chapter_command", "chapter_runs", "latent_diagnostics",
    ),
    "emlib.chapters.runs": ("CHAPTER_RUNS", "book_configs"),
    "emlib.chapters.backbones": (
        "crop_around_foreground", "backbone_view", "family_backbones", "load_backbones", "LoadedBackbones",
        "MissingWeightsNote", "token_pca",
    ),
    "emlib.chapters.published": ("latent_table", "published_note"),
    "emlib.chapters.pages": ("page_facts", "glue_facts"),
    "emlib.chapters.prose": (
        "head_sentence", "backbone_passes", "cache_sentence", "prediction_sentence", "fd_interval_sentence",
    ),
    "emlib.chapters.remedy_effects": ("input_remedy_effects", "feature_remedy_effects"),
    "emlib.chapters.colab": ("ColabSession", "colab_setup", "colab_backbones", "gpu_line"),
    "emlib.paper": (
        "PAPER_CLAIMS", "PAPER_BACKBONE", "PaperClaim", "compare_with_paper", "book_vs_paper_numbers", "FIG2_BASELINES",
        "fig2_baselines", "fig2_comparison",
    ),
    "emlib.paths": ("user_path", "env_path"),
    "emlib.protocol": ("PROTOCOL_ITEMS", "ProtocolItem", "protocol_table"),
    "emlib.viz": (
        "format_title", "plot_embedding_pca", "plot_pca_side_by_side", "plot_patch_pca", "plot_iou_matrix",
        "plot_slice_overlay", "plot_slice_browser", "plot_patch_grid", "slice_viewer", "plot_intensity_histograms",
        "plot_diagnostics_table", "plot_remedy_table", "plot_remedy_scatter", "plot_grouped_bars", "plot_paper_numbers",
        "show_table", "BookTable", "finish_figure", "figure_badges",
    ),
}
_WHERE: dict[str, str] = {name: module for module, names in _API.items() for name in names}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'emlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
