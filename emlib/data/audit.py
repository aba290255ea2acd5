"""The audit of the authors' published paired set: how many pairs are right, and the best score it allows.

:func:`pairing_table` gives, per slice, the label the published pairing
(:mod:`emlib.data.pairing`) hands each image and how it overlaps the image's own label;
:func:`pairing_audit` sums that per split and for the mixed test set. A *perfect model* predicts
every image's own label; scored against the published labels, its IoU_fg pooled over a test set
(as the paper pools it) is the best any model can reach there. ``emlib data audit`` prints it.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from emlib.data.layout import fix_hint
from emlib.data.pairing import published_labels, slice_pairs
from emlib.data.decode import decode_label
from emlib.data.sources import get_source

__all__ = ["AUDIT_SCOPES", "pairing_audit", "pairing_table"]

#: The rows of :func:`pairing_audit`: each split of each dataset, and the authors' mixed test folder
#: (Lucchi++ and VNC test slices together, the set paired runs are scored on there).
AUDIT_SCOPES: tuple[str, ...] = ("lucchi_pp train", "lucchi_pp test", "vnc train", "vnc test", "mixed test")


def pairing_table(name: str, split: str, root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per labelled slice: the label the published pairing gives it, and its overlap with the true one.

    Parameters
    ----------
    name : {'lucchi_pp', 'vnc'}
    split : {'train', 'test'}
    root : path, default=None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.

    Returns
    -------
    DataFrame
        ``dataset, split, slice_id, image, true_label, published_label, right, iou, intersection, union``:
        ``right`` when the published label is the image's own file; ``iou`` the foreground IoU of the
        two labels (1.0 when both are empty), from the pixel counts ``intersection`` and ``union``.
    """
    correct = slice_pairs(name, split, root)
    published = published_labels(correct)  # what slice_pairs(..., pairing="published") gives, without listing again
    hint, src = fix_hint(name, root), get_source(name)
    rows = []
    for (slice_id, image, true), (_, _, given) in zip(correct, published):
        if true is None or given is None:
            continue
        own = decode_label(true, src.labels, hint, title=src.title)[1]
        other = own if given == true else decode_label(given, src.labels, hint, title=src.title)[1]
        inter, union = int(np.logical_and(own, other).sum()), int(np.logical_or(own, other).sum())
        rows.append({"dataset": name, "split": split, "slice_id": slice_id, "image": image.name,
                     "true_label": true.name, "published_label": given.name, "right": given == true,
                     "iou": inter / union if union else 1.0, "intersection": inter, "union": union})
    return pd.DataFrame(rows)


def pairing_audit(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """How the published paired set differs from the correct one, per split, and what a perfect model scores on it.

    Parameters
    ----------
    root : path, default=None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.

    Returns
    -------
    DataFrame
        One row per scope of :data:`AUDIT_SCOPES`: ``pairs``, ``right`` (pairs whose label is the
        image's own), ``mean_iou`` and ``min_iou`` (per slice, own vs published label) and
        ``perfect_iou_fg`` (a perfect model against the published labels, pooled over the scope, at
        the files' resolution).
    """
    tables = {f"{name} {split}": pairing_table(name, split, root)
              for name in ("lucchi_pp", "vnc") for split in ("train", "test")}
    tables["mixed test"] = pd.concat([tables["lucchi_pp test"], tables["vnc test"]], ignore_index=True)
    rows = []
    for scope in AUDIT_SCOPES:
        t = tables[scope]
        union = int(t["union"].sum())
        rows.append({"scope": scope, "pairs": len(t), "right": int(t["right"].sum()),
                     "mean_iou": float(t["iou"].mean()), "min_iou": float(t["iou"].min()),
                     "perfect_iou_fg": int(t["intersection"].sum()) / union if union else 1.0})
    return pd.DataFrame(rows)
