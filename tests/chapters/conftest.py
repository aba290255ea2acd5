"""Fixtures of the chapters tests: the chapter settings of the smoke profile on the staged data."""

from __future__ import annotations

from pathlib import Path

import pytest

from emlib.chapters.settings import ChapterSettings, chapter_settings


@pytest.fixture
def smoke(shared_data: Path) -> ChapterSettings:
    """What a chapter resolves for ``profile="smoke"`` on the CPU, reading ``../shared/data``."""
    return chapter_settings("smoke", device="cpu", data_dir=shared_data)
