"""Where models run: one place that turns ``auto`` / ``cpu`` / ``cuda`` / ``mps`` into a torch device,
after checking that this machine has it (so a run asked for on a missing device ends in one sentence
before any work, naming the devices there are)."""

from __future__ import annotations

import os

import torch

from emlib.errors import ConfigError

__all__ = ["available_devices", "describe_device", "resolve_device"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device names this machine can run on: ``cpu``, then ``cuda:0`` ... for each visible GPU, then ``mps``.

    Examples
    --------
    >>> available_devices()[0]
    'cpu'
    """
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda"]
    if _mps_available():
        names.append("mps")
    return names


def _missing(device: str, what: str) -> ConfigError:
    here = ", ".join(repr(n) for n in available_devices())
    return ConfigError(f"device={device!r} was asked for but {what}; the devices here are {here}, "
                       "so use device='auto' (the best of them) or one of those")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a ``device`` setting, once this machine is known to have it.

    Parameters
    ----------
    device : str or torch.device, default='auto'
        ``auto`` picks CUDA when a GPU is visible, else the CPU; anything else is passed to
        :class:`torch.device` (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...).

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        The name is not a torch device, or names one this machine does not have (CUDA without a
        visible GPU, a GPU index past the last one, MPS off a Mac); the sentence lists
        :func:`available_devices`.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from None
    name = str(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _missing(name, "no GPU is visible")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise _missing(name, f"only {torch.cuda.device_count()} GPU(s) are visible (cuda:0 is the first)")
    if dev.type == "mps" and not _mps_available():
        raise _missing(name, "there is no Apple GPU (MPS) here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise _missing(name, f"emlib runs on the CPU, CUDA GPUs or MPS, not {dev.type}")
    return dev


def describe_device(device: str | torch.device = "cpu") -> str:
    """The machine a run ran on, in words: the GPU's name (``NVIDIA A100-SXM4-80GB GPU``), else the CPU cores.

    Written into every results row (the ``machine`` column), so results read elsewhere say where they were made.

    Examples
    --------
    >>> describe_device("cpu").endswith("-core CPU")
    True
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(dev)} GPU"
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    return f"{os.cpu_count() or 1}-core CPU"
