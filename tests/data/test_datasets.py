"""Training datasets: crop shapes, dtypes, determinism, tiles, paired balance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlib.data import CropDataset, PairedDataset, TileDataset, denormalize, protocol_size, tile_origins
from emlib.errors import ConfigError, ShapeError

@pytest.fixture()
def stack() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 60, 80), dtype=np.uint8)
    masks = images > 200
    return images, masks

def test_crop_items_have_patch_multiple_shapes_and_dtypes(stack) -> None:
    images, masks = stack
    ds = CropDataset(images, masks, crop=(28, 42), patch_size=14, samples_per_epoch=7)
    assert len(ds) == 7
    item = ds[3]
    assert item["image"].shape == (3, 28, 42) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (28, 42) and item["mask"].dtype == torch.int64
    assert set(item["mask"].unique().tolist()) <= {0, 1}

def test_crop_mask_stays_aligned_with_image(stack) -> None:
    images, _ = stack
    masks = images > 200  # the mask is a function of the pixels, so misalignment shows
    ds = CropDataset(images, masks, crop=28, patch_size=14, augment=True, samples_per_epoch=20)
    for i in range(20):
        item = ds[i]
        grey = denormalize(item["image"][None])[0]
        np.testing.assert_array_equal(grey > 200, item["mask"].numpy().astype(bool))

def test_crops_are_deterministic_per_seed_and_epoch(stack) -> None:
    images, masks = stack
    a = CropDataset(images, masks, crop=28, patch_size=14, seed=3, samples_per_epoch=4)
    b = CropDataset(images, masks, crop=28, patch_size=14, seed=3, samples_per_epoch=4)
    c = CropDataset(images, masks, crop=28, patch_size=14, seed=4, samples_per_epoch=4)
    assert all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(4))
    assert not all(torch.equal(a[i]["image"], c[i]["image"]) for i in range(4))
    first = [a[i]["image"] for i in range(4)]
    a.set_epoch(1)
    assert not all(torch.equal(first[i], a[i]["image"]) for i in range(4))
    a.set_epoch(0)
    assert all(torch.equal(first[i], a[i]["image"]) for i in range(4))

def test_bad_crop_sizes_are_one_sentence(stack) -> None:
    images, masks = stack
    with pytest.raises(ConfigError, match=r"crop 30x30 is not a multiple of the patch size 14; use e.g. 28x28"):
        CropDataset(images, masks, crop=30, patch_size=14)
    with pytest.raises(ConfigError, match="larger than the slices"):
        CropDataset(images, masks, crop=84, patch_size=14)
    with pytest.raises(ShapeError, match="must match"):
        CropDataset(images, masks[:, :10], crop=28, patch_size=14)

def test_tiles_cover_every_pixel_once_or_more(stack) -> None:
    images, masks = stack
    ds = TileDataset(images, masks, tile=(28, 28), patch_size=14)
    assert tile_origins(80, 28, 28) == [0, 28, 52]
    assert len(ds) == 5 * 3 * 3
    covered = np.zeros(images.shape, bool)
    for (z, r, c) in ds.origins:
        covered[z, r : r + 28, c : c + 28] = True
    assert covered.all()
    assert torch.equal(ds[4]["image"], ds[4]["image"])

def test_tiles_with_protocol_resize() -> None:
    images = np.zeros((2, 768, 1024), np.uint8)
    ds = TileDataset(images, images > 0, tile=None, patch_size=14, long_edge=1022)
    assert protocol_size(768, 1024) == (756, 1022)
    assert len(ds) == 2 and ds[0]["image"].shape == (3, 756, 1022)

def test_paired_concat_and_balance(stack) -> None:
    images, masks = stack
    big = TileDataset(images, masks, tile=28, patch_size=14)  # 45 tiles
    small = CropDataset(images[:2], masks[:2], crop=28, patch_size=14, samples_per_epoch=6)
    concat = PairedDataset({"lucchi_pp": big, "vnc": small}, balance=False)
    assert len(concat) == 51
    assert sum(concat[i]["domain"] for i in range(len(concat))) == 6
    balanced = PairedDataset({"lucchi_pp": big, "vnc": small}, balance=True, seed=0)
    assert len(balanced) == 12
    domains = [balanced[i]["domain"] for i in range(12)]
    assert domains == [0, 1] * 6
    used = sorted(balanced.locate(i)[1] for i in range(0, 12, 2))
    assert len(set(used)) == 6  # no source index repeats within an epoch
    before = [balanced.locate(i) for i in range(12)]
    balanced.set_epoch(1)
    assert [balanced.locate(i) for i in range(12)] != before
    with pytest.raises(ConfigError, match="at least two sources"):
        PairedDataset({"vnc": small})
