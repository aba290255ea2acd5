"""Reading the datasets: whole-volume hashes, pairing, splits, caching, and every bad-input sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from emlib.data import (
    VNC_TEST_SLICES, data_fingerprint, data_root, dataset_dir, list_datasets, load_volume, read_volume, volume_sha256,
)
from emlib.errors import ConfigError, DataError, EmlibError, ShapeError

from ..conftest import write_png

VOLUME_SHA256 = {
    ("lucchi_pp", "train", "images"): "a5051ce73c769229529427a09de011ed5d0d652bd24c69d5041495076ff60fdc",
    ("lucchi_pp", "train", "masks"): "267cc693ee565884b1298eb2176e1f4df1807e30c427032339a09d7f2c5b3af3",
    ("lucchi_pp", "test", "images"): "82c7ad7059f66349a6ed6392120b783c8170a37d6972b5ed251e797d1901b2b6",
    ("lucchi_pp", "test", "masks"): "908b416bde9a726eb82bb0ccc824bf3879ea7ad35ec12e310b45794c29f5c793",
    ("vnc", "all", "images"): "b845f8b459993f5ca6135daba76a4069bdddca65770f5171f4c3518765f391da",
    ("vnc", "all", "masks"): "502dcd26f36c7d058b562bc5d336dc8f5cfd25f40c92d795f6bf8b006aa4eafc",
    ("vnc", "unlabelled", "images"): "9ebdc89403926df5b17f1650fd77b9a2e3e0ba835c3ead9a70199900b4514e5b",
}

@pytest.mark.slow
@pytest.mark.parametrize("name,split", [("lucchi_pp", "train"), ("lucchi_pp", "test"), ("vnc", "all"), ("vnc", "unlabelled")])
def test_whole_volume_hashes_match_the_readme(shared_data: Path, name: str, split: str) -> None:
    vol = read_volume(name, split, root=shared_data)
    assert vol.images.dtype == np.uint8
    assert volume_sha256(vol.images) == VOLUME_SHA256[(name, split, "images")]
    if split == "unlabelled":
        assert vol.masks is None
    else:
        assert vol.masks is not None and vol.masks.dtype == bool
        assert volume_sha256(vol.masks) == VOLUME_SHA256[(name, split, "masks")]

def test_lucchi_pairs_by_index_not_by_sorted_name(tiny_root) -> None:
    root, truth = tiny_root
    for split in ("train", "test"):
        vol = read_volume("lucchi_pp", split, root=root)
        np.testing.assert_array_equal(vol.images, truth["lucchi_pp"][f"{split}_images"])
        np.testing.assert_array_equal(vol.masks, truth["lucchi_pp"][f"{split}_masks"])
        assert vol.slice_ids[10] == "mask0010"

def test_vnc_reads_mode_1_masks_and_stack2(tiny_root) -> None:
    root, truth = tiny_root
    vol = read_volume("vnc", "all", root=root)
    np.testing.assert_array_equal(vol.images, truth["vnc"]["images"])
    np.testing.assert_array_equal(vol.masks, truth["vnc"]["masks"])
    assert [int(s) for s in read_volume("vnc", "test", root=root).slice_ids] == list(VNC_TEST_SLICES)
    unlabelled = read_volume("vnc", "unlabelled", root=root)
    assert unlabelled.masks is None and np.isnan(unlabelled.foreground_fraction)

def test_volumes_are_read_only(tiny_root) -> None:
    root, _ = tiny_root
    vol = read_volume("vnc", "train", root=root)
    with pytest.raises(ValueError):
        vol.images[0, 0, 0] = 1

def test_slices_selection(tiny_root) -> None:
    root, truth = tiny_root
    vol = read_volume("lucchi_pp", "test", root=root, slices=[3, 1])
    assert vol.slice_ids == ("mask0003", "mask0001")
    np.testing.assert_array_equal(vol.images[1], truth["lucchi_pp"]["test_images"][1])
    with pytest.raises(ConfigError, match="out of range"):
        read_volume("lucchi_pp", "test", root=root, slices=[99])

def test_data_root_order_and_cached_volumes(tiny_root, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = tiny_root
    monkeypatch.setenv("EMLIB_DATA", str(root / "env"))
    assert data_root(root) == root and data_root() == root / "env"
    assert dataset_dir("vnc", root) == root / "vnc" / "groundtruth-drosophila-vnc-master"
    first = load_volume("vnc", "test", root=root, slices=[0, 2])
    assert load_volume("vnc", "test", root=root, slices=(0, 2)) is first  # a list and a tuple hit one entry
    np.testing.assert_array_equal(first.images, read_volume("vnc", "test", root=root, slices=[0, 2]).images)
    assert not first.images.flags.writeable

# ------------------------------------------------------------------ bad input, one sentence each


def _one_sentence(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.strip(), text
    return text

def test_missing_data_folder_says_how_to_download_from_where_the_user_stands(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DataError) as info:  # an explicit root: EMLIB_DATA would not help, --root does
        read_volume("lucchi_pp", "train", root=tmp_path / "nowhere")
    text = _one_sentence(info.value)
    assert f"emlib data download lucchi_pp --root {tmp_path / 'nowhere'} --force" in text and "EMLIB_DATA" not in text
    monkeypatch.delenv("EMLIB_DATA", raising=False)
    monkeypatch.setattr("pooch.os_cache", lambda name: tmp_path / "cache")
    with pytest.raises(DataError) as info:  # the default root: download, or point EMLIB_DATA at a copy
        read_volume("lucchi_pp", "train")
    text = _one_sentence(info.value)
    assert "`emlib data download lucchi_pp --force`" in text and "set EMLIB_DATA" in text
    monkeypatch.setenv("EMLIB_DATA", str(tmp_path / "copy"))
    with pytest.raises(DataError) as info:  # EMLIB_DATA: downloading would not fill it, so say so
        read_volume("lucchi_pp", "train")
    text = _one_sentence(info.value)
    assert "never downloads into" in text and "unset EMLIB_DATA and run `emlib data download lucchi_pp`" in text

def test_wrong_layout_names_missing_folders(tiny_root) -> None:
    root, _ = tiny_root
    shutil.rmtree(root / "lucchi_pp" / "Lucchi++" / "Test_Out")
    with pytest.raises(DataError, match="wrong layout.*Test_Out") as info:
        read_volume("lucchi_pp", "test", root=root)
    _one_sentence(info.value)

def test_unknown_dataset_and_split(tiny_root) -> None:
    root, _ = tiny_root
    with pytest.raises(ConfigError, match=r"unknown dataset 'lucchi'; choose one of \['lucchi_pp', 'vnc'\]"):
        read_volume("lucchi", "train", root=root)
    with pytest.raises(ConfigError, match="split 'val' does not exist for Lucchi\\+\\+"):
        read_volume("lucchi_pp", "val", root=root)
    assert list_datasets() == ["lucchi_pp", "vnc"]

def test_unreadable_image(tiny_root) -> None:
    root, _ = tiny_root
    bad = root / "lucchi_pp" / "Lucchi++" / "Train_In" / "mask0004.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="cannot decode .*mask0004.png") as info:
        read_volume("lucchi_pp", "train", root=root)
    assert "download" in _one_sentence(info.value)

def test_image_mask_shape_mismatch(tiny_root) -> None:
    root, _ = tiny_root
    write_png(root / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "mitochondria" / "02.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ShapeError, match=r"mask .*02.png has shape \(10, 10\) but image .*02.tif has \(56, 56\)"):
        read_volume("vnc", "all", root=root)

def test_missing_label(tiny_root) -> None:
    root, _ = tiny_root
    (root / "lucchi_pp" / "Lucchi++" / "Test_Out" / "7.png").unlink()
    with pytest.raises(DataError, match="mask0007.png has no label"):
        read_volume("lucchi_pp", "test", root=root)

def test_errors_share_one_family(tmp_path: Path) -> None:
    with pytest.raises(EmlibError):
        read_volume("vnc", "train", root=tmp_path)


def test_a_file_that_is_not_an_official_slice_is_refused(tiny_root) -> None:
    root, _ = tiny_root
    stray = root / "lucchi_pp" / "Lucchi++" / "Train_In" / "mask0200.png"  # Lucchi++ has slices 0000 ... 0164
    shutil.copy(stray.parent / "mask0001.png", stray)
    with pytest.raises(DataError, match=r"Train_In holds mask0200\.png, which is not an official Lucchi\+\+ slice "
                                        r"\(mask0000\.png \.\.\. mask0164\.png\); move it out of that folder") as info:
        read_volume("lucchi_pp", "train", root=root)
    _one_sentence(info.value)
    (root / "lucchi_pp" / "Lucchi++" / "Train_In" / "notes.txt").write_text("other files are no slices")
    stray.unlink()
    assert len(read_volume("lucchi_pp", "train", root=root)) == 12


def test_a_renamed_official_slice_is_refused(shared_data: Path, tmp_path: Path) -> None:
    staged = shared_data / "vnc" / "groundtruth-drosophila-vnc-master"
    copy = tmp_path / "vnc" / "groundtruth-drosophila-vnc-master"
    for sub in ("stack1/raw", "stack1/mitochondria"):
        (copy / sub).mkdir(parents=True)
        for file in (staged / sub).iterdir():
            (copy / sub / file.name).symlink_to(file)
    (copy / "stack1/raw/01.tif").unlink()
    (copy / "stack1/raw/01.tif").symlink_to(staged / "stack1/raw/02.tif")
    pattern = r"stack1/raw/01\.tif holds the official pixels of stack1/raw/02\.tif: slices in stack1/raw were renamed"
    with pytest.raises(DataError, match=pattern):
        read_volume("vnc", "train", root=tmp_path)
    with pytest.raises(DataError, match=pattern):
        data_fingerprint("vnc", "train", root=tmp_path)


def test_load_volume_reads_a_changed_file_again(tiny_root) -> None:
    root, truth = tiny_root
    first = load_volume("vnc", "test", root=root)
    assert load_volume("vnc", "test", root=root) is first  # unchanged: served from memory
    image = truth["vnc"]["images"][3].copy()
    image[0, 0] ^= 1
    tifffile.imwrite(root / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "raw" / "03.tif", image)
    again = load_volume("vnc", "test", root=root)
    assert again is not first and again.images[1, 0, 0] == image[0, 0]
