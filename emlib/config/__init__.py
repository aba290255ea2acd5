"""Configuration: one run (:mod:`emlib.config.run`) and the profiles that expand into grids of runs
(:mod:`emlib.config.profiles`). The bottom floor of emlib: it imports nothing above the errors.
"""

from __future__ import annotations

from emlib.config.profiles import DRY_RUN_LABEL, DRY_RUN_SUFFIX, PROFILES, Profile, get_profile, grid_configs, list_profiles
from emlib.config.run import (
    ALIGNMENT_FIELDS,
    BUILD_ENV,
    INPUT_ALIGNMENTS,
    LORA_TARGETS,
    OPTIONAL_FIELDS,
    LOSSES,
    PAIRINGS,
    POS_INTERPOLATIONS,
    REGIMES,
    MIXED_TEST,
    SCORED_TEST_SETS,
    SEED_RANGE,
    TEST_LABELS,
    TEST_SETS,
    TRAIN_SETS,
    LoraSettings,
    RunConfig,
)

__all__ = [
    "ALIGNMENT_FIELDS",
    "BUILD_ENV",
    "DRY_RUN_LABEL",
    "DRY_RUN_SUFFIX",
    "INPUT_ALIGNMENTS",
    "LORA_TARGETS",
    "OPTIONAL_FIELDS",
    "LOSSES",
    "PAIRINGS",
    "POS_INTERPOLATIONS",
    "PROFILES",
    "REGIMES",
    "MIXED_TEST",
    "SCORED_TEST_SETS",
    "SEED_RANGE",
    "TEST_LABELS",
    "TEST_SETS",
    "TRAIN_SETS",
    "LoraSettings",
    "Profile",
    "RunConfig",
    "get_profile",
    "grid_configs",
    "list_profiles",
]
