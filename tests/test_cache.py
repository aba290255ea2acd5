"""Frozen-feature cache (emlib.cache): a hit gives the same features without running the backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emlib.cache import FeatureCache, cache_key


def test_cache_hit_gives_identical_logits_and_skips_the_backbone() -> None:
    calls = []
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)

    def compute(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return conv(x)

    inputs = torch.randn(6, 3, 8, 8)
    cache = FeatureCache(compute, "k", dtype=torch.float32)
    first = cache.get([0, 2, 4], lambda idx: inputs[idx], torch.device("cpu"))
    again = cache.get([4, 0, 2], lambda idx: inputs[idx], torch.device("cpu"))
    assert calls == [3]  # the second call never reached the backbone
    assert torch.equal(first[[2, 0, 1]], again)
    assert (cache.hits, cache.misses) == (3, 3)
    with torch.no_grad():
        assert torch.allclose(first, conv(inputs[[0, 2, 4]]))


def test_disk_cache_survives_a_new_process(tmp_path: Path) -> None:
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    inputs = torch.randn(3, 3, 8, 8)
    cache = FeatureCache(conv, "key", directory=tmp_path)
    cache.get([0, 1], lambda idx: inputs[idx], torch.device("cpu"))
    cache.save()
    warm = FeatureCache(lambda x: pytest.fail("backbone called"), "key", directory=tmp_path)
    assert len(warm) == 2
    warm.get([1], lambda idx: inputs[idx], torch.device("cpu"))


def test_cache_key_depends_on_every_part() -> None:
    key = cache_key(backbone="dinov2_vits14", crop=56)
    assert key == cache_key(crop=56, backbone="dinov2_vits14")  # order does not matter
    assert key != cache_key(backbone="dinov2_vits14", crop=112)
    assert key != cache_key(backbone="dinov2_vits14", crop=56, input_alignment="histmatch")


def test_a_truncated_disk_cache_is_named_and_rebuilt(tmp_path: Path) -> None:
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    inputs = torch.randn(3, 3, 8, 8)
    cache = FeatureCache(conv, "key", directory=tmp_path)
    cache.get([0, 1, 2], lambda idx: inputs[idx], torch.device("cpu"))
    cache.save()
    data = cache.path.read_bytes()
    cache.path.write_bytes(data[: len(data) // 2])  # the process was killed while another wrote it by hand
    with pytest.warns(RuntimeWarning, match=r"feature cache .*key\.safetensors cannot be read \(SafetensorError: .*\); it is rebuilt"):
        again = FeatureCache(conv, "key", directory=tmp_path)
    assert len(again) == 0
    again.get([0], lambda idx: inputs[idx], torch.device("cpu"))
    again.save()  # replaces the damaged file even though only one item is new
    assert len(FeatureCache(conv, "key", directory=tmp_path)) == 1
    (tmp_path / "other.safetensors").write_bytes(cache.path.read_bytes())  # a file of another key under this name
    with pytest.warns(RuntimeWarning, match="holds the features of another key"):
        FeatureCache(conv, "other", directory=tmp_path)


def test_a_disk_cache_without_room_is_not_saved_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    """Issue 23: a full disk while the feature cache is written warns with the space needed; the features stay in memory."""
    import safetensors.torch

    conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    inputs = torch.randn(3, 3, 8, 8)
    cache = FeatureCache(conv, "key", directory=tmp_path)
    cache.get([0, 1, 2], lambda idx: inputs[idx], torch.device("cpu"))

    def full(tensors, filename, metadata=None):
        raise safetensors.SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })')

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.warns(RuntimeWarning, match=rf"feature cache not saved: the disk of {tmp_path} has no room for key\.safetensors "
                                            r"\(about .* needed, .* free; no key\.safetensors was left\)"):
        cache.save()
    assert list(tmp_path.iterdir()) == [] and len(cache) == 3
    assert cache.get([1], lambda idx: inputs[idx], torch.device("cpu")).shape == (1, 4, 4, 4) and cache.misses == 3
    monkeypatch.undo()
    cache.save()  # room again: the next save writes what the failed one could not
    assert len(FeatureCache(conv, "key", directory=tmp_path)) == 3
