"""emlib: are vision foundation models foundational for EM segmentation?

A small library behind the study companion book that reproduces and extends
Fuster-Barceló & Uhlmann (LMRL @ ICLR 2026, arXiv:2602.08505).
"""

from __future__ import annotations

from emlib.errors import ChecksumError, ConfigError, DataError, EmlibError, ShapeError, WeightsError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "EmlibError",
    "ConfigError",
    "DataError",
    "ChecksumError",
    "WeightsError",
    "ShapeError",
]
