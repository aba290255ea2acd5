"""Losses (emlib.losses): Dice / cross-entropy, domain ids, CORAL, foreground reweighting."""

from __future__ import annotations

import pytest
import torch

from emlib.config import LOSSES
from emlib.data import pad_collate
from emlib.errors import ConfigError, ShapeError
from emlib.losses import (
    coral_loss,
    dice_loss,
    domain_ids,
    domain_weighted_loss,
    foreground_weights,
    monai_dice_loss,
    patch_features,
    segmentation_loss,
)


def test_dice_and_segmentation_losses() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    perfect = torch.stack([(1 - target) * 20.0, target * 20.0], dim=1).float()
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-perfect, target).item() > 0.9
    assert segmentation_loss(perfect, target, "ce").item() < 1e-6
    with pytest.raises(ConfigError, match="loss='focal'"):
        segmentation_loss(perfect, target, "focal")


def test_ce_dice_is_the_sum_and_shapes_are_checked() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 4, 4), (torch.rand(2, 4, 4) > 0.5).long()
    assert LOSSES == ("dice", "ce", "ce_dice", "monai_dice")
    both = segmentation_loss(logits, target, "ce_dice").item()
    assert both == pytest.approx(segmentation_loss(logits, target, "ce").item() + segmentation_loss(logits, target).item())
    with pytest.raises(ShapeError, match=r"dice_loss needs logits \(B, 2, H, W\)"):
        dice_loss(torch.randn(2, 3, 4, 4), target)


def test_domain_ids_repeat_an_int_and_check_the_range() -> None:
    cpu = torch.device("cpu")
    assert domain_ids(1, 3, 2, cpu).tolist() == [1, 1, 1]
    assert domain_ids([0, 1], 2, 2, cpu).dtype == torch.long
    with pytest.raises(ShapeError, match="one id per item"):
        domain_ids([0, 1, 0], 2, 2, cpu)
    with pytest.raises(ConfigError, match=r"domain ids must lie in 0..1, got \[2\]"):
        domain_ids(2, 1, 2, cpu)


def test_patch_features_reads_maps_as_patch_vectors() -> None:
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    flat = patch_features(maps)
    assert flat.shape == (8, 3) and torch.equal(flat[0], maps[0, :, 0, 0])
    assert patch_features(flat) is flat
    with pytest.raises(ShapeError, match="features must be"):
        patch_features(torch.zeros(3))


def test_coral_loss_is_zero_for_equal_covariances_positive_otherwise_and_differentiable() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    assert coral_loss(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-7)
    y = (x * torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5])).requires_grad_()
    loss = coral_loss(x, y)
    ca, cb = torch.cov(x.T), torch.cov(y.detach().T)
    assert loss.item() == pytest.approx(float(((ca - cb) ** 2).sum() / (4 * 25)), rel=1e-5)
    loss.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    maps = torch.randn(2, 5, 3, 3)  # feature maps are read as patch vectors
    assert coral_loss(maps, maps).item() == 0.0


def test_coral_loss_rejects_mismatched_or_too_few_vectors() -> None:
    with pytest.raises(ShapeError, match="same feature size"):
        coral_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ShapeError, match="at least 2 vectors"):
        coral_loss(torch.randn(1, 3), torch.randn(4, 3))


def test_foreground_reweighting_weights() -> None:
    w = foreground_weights([0.1, 0.05])
    assert w.tolist() == pytest.approx([2 / 3, 4 / 3]) and w.mean() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="foreground fractions"):
        foreground_weights([0.2, 0.0])
    torch.manual_seed(0)
    logits, target = torch.randn(4, 2, 8, 8), (torch.rand(4, 8, 8) > 0.7).long()
    one_domain = torch.zeros(4, dtype=torch.long)
    assert domain_weighted_loss(logits, target, one_domain, [1.0, 1.0]).item() == pytest.approx(
        segmentation_loss(logits, target).item()
    )
    d = torch.tensor([0, 0, 1, 1])
    parts = [segmentation_loss(logits[d == k], target[d == k]).item() for k in (0, 1)]
    assert domain_weighted_loss(logits, target, d, w).item() == pytest.approx(0.5 * (w[0] * parts[0] + w[1] * parts[1]))


@pytest.mark.parametrize("kind", ["dice", "ce", "ce_dice"])
def test_padded_pixels_do_not_count(kind: str) -> None:
    # one 3x4 item padded to 5x6 with arbitrary logits and labels on the padding: same loss as unpadded
    torch.manual_seed(0)
    logits, target = torch.randn(1, 2, 3, 4), torch.randint(0, 2, (1, 3, 4))
    padded_logits, padded_target = torch.randn(1, 2, 5, 6) * 9, torch.randint(0, 2, (1, 5, 6))
    padded_logits[..., :3, :4], padded_target[..., :3, :4] = logits, target
    valid = torch.zeros(1, 5, 6, dtype=torch.bool)
    valid[..., :3, :4] = True
    expected = segmentation_loss(logits, target, kind)
    assert torch.allclose(segmentation_loss(padded_logits, padded_target, kind, valid=valid), expected, atol=1e-6)
    assert not torch.allclose(segmentation_loss(padded_logits, padded_target, kind), expected, atol=1e-3)


def test_monai_dice_is_monais_dice_loss_as_the_authors_build_it() -> None:
    monai = pytest.importorskip("monai")  # the [dev] extra installs it: CI runs this test
    theirs = monai.losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=True)  # seg_trainer.py
    gen = torch.Generator().manual_seed(0)
    for batch, h, w in ((1, 5, 7), (3, 16, 16), (4, 9, 30)):
        logits = 3 * torch.randn(batch, 2, h, w, generator=gen)
        target = (torch.rand(batch, h, w, generator=gen) > 0.7).long()
        target[0] = 0  # an image without foreground: MONAI's smoothing decides its foreground term
        expected = theirs(logits, target[:, None]).item()
        assert monai_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
        assert segmentation_loss(logits, target, "monai_dice").item() == pytest.approx(expected, abs=1e-6)


def test_monai_dice_counts_the_padding_of_a_batch_as_background_like_the_authors() -> None:
    monai = pytest.importorskip("monai")
    theirs = monai.losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=True)
    gen = torch.Generator().manual_seed(1)
    items = [{"image": torch.randn(3, h, w, generator=gen), "mask": (torch.rand(h, w, generator=gen) > 0.6).long()}
             for h, w in ((12, 20), (16, 14))]
    images, masks, valid = pad_collate(items)
    assert valid is not None and not bool(valid.all())  # the batch is padded
    logits = 2 * torch.randn(2, 2, *masks.shape[-2:], generator=gen)
    expected = theirs(logits, masks[:, None]).item()  # the authors' _pad_collate pads masks with 0 too
    got = segmentation_loss(logits, masks, "monai_dice", valid=valid).item()
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(segmentation_loss(logits, masks, "dice", valid=valid).item(), abs=1e-3)
