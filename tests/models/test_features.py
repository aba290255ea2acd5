"""Tests of emlib.models.features with a fake backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlib.errors import ShapeError
from emlib.models import extract_embeddings, extract_token_maps

torch.set_num_threads(1)


class FakeBackbone(torch.nn.Module):
    """Tiny stand-in with the emlib backbone interface."""

    patch_size = 4
    embed_dim = 6
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    weights_label = "random weights"
    name = "fake"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Conv2d(3, self.embed_dim, kernel_size=4, stride=4)

    def forward(self, x):  # (B, C, H/p, W/p)
        return self.proj(x)

    def forward_tokens(self, x):
        return self(x).flatten(2).transpose(1, 2)

    def embed(self, x):
        return self.forward_tokens(x).mean(1)


def normalise(batch):
    x = torch.from_numpy(np.asarray(batch)).float() / 255.0
    return x[:, None].expand(-1, 3, -1, -1)


def test_extract_embeddings_and_token_maps():
    bb = FakeBackbone().train()
    images = np.random.default_rng(0).integers(0, 256, size=(5, 16, 20), dtype=np.uint8)
    emb = extract_embeddings(bb, images, normalise=normalise, batch_size=2, progress=False)
    assert emb.shape == (5, 6) and emb.dtype == np.float32
    assert bb.training  # training flag restored
    with torch.no_grad():
        ref = bb.embed(normalise(images)).numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
    tok = extract_token_maps(bb, images, normalise=normalise, batch_size=3, progress=False)
    assert tok.shape == (5, 4, 5, 6)
    np.testing.assert_allclose(tok.mean(axis=(1, 2)), emb, rtol=1e-5, atol=1e-6)
    # a sequence of slices of two sizes is batched per size
    mixed = [images[0], images[1], np.zeros((8, 8), np.uint8)]
    assert extract_embeddings(bb, mixed, normalise=normalise, progress=False).shape == (3, 6)
    with pytest.raises(ShapeError, match=r"\(Z, H, W\)"):
        extract_embeddings(bb, images[0], normalise=normalise, progress=False)
