"""Synthetic embeddings shared by the diagnostics tests."""

from __future__ import annotations

import numpy as np


def two_blobs(n=60, d=16, shift=6.0, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n + 10, d))
    b[:, 0] += shift
    return a, b
