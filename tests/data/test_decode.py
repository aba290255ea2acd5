"""Decoding slice files: labels by their dataset's declared encoding (0/255, 0/1), other value sets refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emlib.data.decode import decode_image, decode_label
from emlib.data.sources import LabelEncoding, get_source
from emlib.errors import DataError

from ..conftest import write_png

MASK = np.zeros((20, 30), bool)
MASK[3:9, 4:17] = True


@pytest.mark.parametrize("foreground", [255, 1])
def test_labels_stored_as_0_255_or_0_1_read_as_the_same_mask(tmp_path: Path, foreground: int) -> None:
    path = tmp_path / "0.png"
    write_png(path, MASK.astype(np.uint8) * foreground)
    raw, mask = decode_label(path, get_source("lucchi_pp").labels)
    np.testing.assert_array_equal(mask, MASK)
    assert raw.max() == foreground


def test_rgba_labels_read_their_declared_channel(tmp_path: Path) -> None:
    path = tmp_path / "0.png"
    grey = MASK.astype(np.uint8) * 255
    write_png(path, np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    np.testing.assert_array_equal(decode_label(path, LabelEncoding())[1], MASK)


@pytest.mark.parametrize("values,shown", [((0, 100), "0, 100"), ((0, 1, 255), "0, 1, 255"),
                                          (tuple(range(0, 256, 5)), "0, 5, 10, 15, 20, 25, ... (52 values)")])
def test_any_other_value_set_is_one_sentence_naming_the_values_found(tmp_path: Path, values, shown) -> None:
    path = tmp_path / "0.png"
    arr = np.resize(np.array(values, np.uint8), MASK.shape)
    write_png(path, arr)
    with pytest.raises(DataError) as info:
        decode_label(path, get_source("lucchi_pp").labels, "HINT", title="Lucchi++")
    text = str(info.value)
    assert "\n" not in text and f"{path} holds the pixel values {shown}, but Lucchi++ labels must be background 0" in text
    assert "foreground 255 (official) or 1" in text and text.endswith("(HINT)")


def test_a_few_anti_aliased_pixels_are_read_where_the_dataset_declares_them(tmp_path: Path) -> None:
    """VNC's official masks hold up to 51 values between 0 and 255 per slice (0.005 %); Lucchi++'s none."""
    arr = np.zeros((100, 100), np.uint8)
    arr[10:40, 10:40] = 255
    arr[40, 10:15] = (1, 100, 127, 128, 200)  # 5 stray pixels of 10,000: 0.05 %
    path = tmp_path / "00.png"
    write_png(path, arr)
    mask = decode_label(path, get_source("vnc").labels)[1]
    assert mask.sum() == 900 + 2  # 128 and 200 are foreground, as ``> 127`` reads them
    with pytest.raises(DataError, match="holds the pixel values 0, 1, 100, 127, 128, 200"):
        decode_label(path, get_source("lucchi_pp").labels)


@pytest.mark.parametrize("kind", ["image", "label"])
def test_a_16_bit_file_is_refused_naming_its_pixel_type(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(MASK.astype(np.uint16) * 65535).save(path)
    with pytest.raises(DataError, match=r"x\.png holds uint16 pixels, expected uint8 \(8-bit\); HINT$"):
        decode_image(path, "HINT") if kind == "image" else decode_label(path, LabelEncoding(), "HINT")


def test_a_truncated_or_foreign_file_cannot_be_decoded_and_the_sentence_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "mask0000.png"
    write_png(path, (MASK * 200).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"^cannot decode .*mask0000\.png \(\w+Error: .*\); HINT$"):
        decode_image(path, "HINT")
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")  # e.g. a symlink to /etc/passwd
    with pytest.raises(DataError) as info:
        decode_image(path, "HINT")
    assert str(info.value).count(str(path)) == 1 and "the file" in str(info.value)
