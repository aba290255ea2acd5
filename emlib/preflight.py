"""What is checked before a run does any work, and what its results depend on besides its config.

:func:`check_run` checks a :class:`~emlib.config.RunConfig` against what ``config.py`` cannot
see: that its backbone is registered, that its crop and evaluation window are multiples of the
backbone's patch size (or of the U-Net's pooling factor), and that a LoRA rank fits the backbone's
width. It reads no data and builds no model.

:func:`input_fingerprints` names, by content, the data and the backbone weights a run reads: the
SHA-256 of every image and label of both datasets' train and test splits
(:func:`emlib.data.data_fingerprint`, which also checks their layout), and the weights as
:func:`emlib.models.hub.find_weights` resolves them, the very file the run will load: the SHA-256
of a local file (explicit, ``$EMLIB_WEIGHTS``, torch.hub folder; computed once per process), the
hub id for the hub's own files (the same before and after the download), ``random`` for random
weights. Offline, missing weights fail here, in seconds, before any work. Run folders (:func:`emlib.grid.runner.run_folder`)
and the feature cache are keyed on them, so swapped data, a replaced weights file or another
``EMLIB_WEIGHTS``/``EMLIB_DATA`` never reuse results made from other inputs.
"""

from __future__ import annotations

import hashlib
import json
import os

from emlib.config import RunConfig
from emlib.data import data_fingerprint, list_datasets
from emlib.errors import ConfigError
from emlib.models import get_backbone_spec
from emlib.models.hub import WeightsMissing, find_weights
from emlib.models.lora import check_lora_rank

__all__ = ["UNET_DEPTH", "check_run", "data_inputs_fingerprint", "input_fingerprints", "inputs_digest"]

#: Pooling depth of the U-Net of the ``unet`` regime (its inputs' sides are multiples of ``2**UNET_DEPTH``).
UNET_DEPTH = 3


def check_run(cfg: RunConfig) -> None:
    """Raise ConfigError when ``cfg`` names an unknown backbone or sizes that do not fit its patch size.

    Examples
    --------
    >>> check_run(RunConfig(crop=30))
    Traceback (most recent call last):
    emlib.errors.ConfigError: crop=30 is not a multiple of the patch size 14 of dinov2_vits14; use e.g. crop=28
    """
    if cfg.regime == "unet":
        multiple, what = 2**UNET_DEPTH, f"the U-Net's pooling factor {2**UNET_DEPTH}"
    else:
        spec = get_backbone_spec(cfg.backbone)
        multiple, what = spec.patch_size, f"the patch size {spec.patch_size} of {cfg.backbone}"
        if cfg.regime == "lora":
            check_lora_rank(cfg.lora, spec.embed_dim, cfg.backbone)
    for name in ("crop", "eval_window"):
        value = getattr(cfg, name)
        if value is not None and value % multiple:
            raise ConfigError(
                f"{name}={value} is not a multiple of {what}; use e.g. {name}={max(multiple, value // multiple * multiple)}"
            )


def _weights_id(cfg: RunConfig, *, expect_weights: bool = True) -> str:
    if cfg.regime == "unet":
        return "none"
    if not cfg.pretrained:
        return "random"  # the seed, part of the config, fixes them
    try:
        return find_weights(cfg.backbone, cfg.weights).fingerprint
    except WeightsMissing:
        if expect_weights or cfg.weights is not None:
            raise
        # not fetched yet (offline): the id the hub's file will have once `emlib weights fetch` brings it
        return f"hub:{get_backbone_spec(cfg.backbone).hub_id}"


def input_fingerprints(
    cfg: RunConfig, *, root: str | os.PathLike[str] | None = None, expect_weights: bool = True,
) -> dict[str, str]:
    """``{"data": ..., "weights": ...}``: the content of the data and the weights a run reads.

    Every run is tested on both datasets (and a paired run trains on both), so the data part covers
    the train and test splits of both. Raises DataError for missing or misplaced data and
    WeightsError for a missing weights file (offline: nothing to load and nothing to download),
    before any work; every slice is checked to be the official one (``modified:`` starts the data
    fingerprint where modified data is allowed and read). With ``expect_weights=False`` (``emlib grid --plan`` / ``--status``, which load
    nothing) hub weights not fetched yet are named as they will be once fetched.
    """
    return {"data": data_inputs_fingerprint(root=root), "weights": _weights_id(cfg, expect_weights=expect_weights)}


def data_inputs_fingerprint(*, root: str | os.PathLike[str] | None = None) -> str:
    """The ``data`` part of :func:`input_fingerprints`: both datasets' train and test splits under ``root``.

    The ``data_fingerprint`` column of every results row; ``modified:`` starts it where modified data is
    allowed and read. Raises DataError for missing or misplaced data.
    """
    data, modified = hashlib.sha256(), False
    for name in list_datasets():
        for split in ("train", "test"):
            fingerprint = data_fingerprint(name, split, root=root)
            modified |= fingerprint.startswith("modified:")  # allowed, and recorded in the run's fingerprint
            data.update(f"{name}/{split}:{fingerprint}\n".encode())
    return ("modified:" if modified else "") + data.hexdigest()


def inputs_digest(cfg: RunConfig, *, root: str | os.PathLike[str] | None = None, expect_weights: bool = True) -> str:
    """SHA-256 of :func:`input_fingerprints`: one string that changes when the data or the weights do."""
    fingerprints = input_fingerprints(cfg, root=root, expect_weights=expect_weights)
    return hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()
