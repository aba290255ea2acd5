"""Where models run: one place that turns ``auto`` / ``cpu`` / ``cuda`` into a torch device."""

from __future__ import annotations

import torch

from emlib.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a ``device`` setting.

    Parameters
    ----------
    device : str or torch.device, default='auto'
        ``auto`` picks CUDA when a GPU is visible, else the CPU; anything else is passed to
        :class:`torch.device` (``cpu``, ``cuda``, ``cuda:1``, ...).

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        The name is not a torch device, or CUDA was asked for and no GPU is visible.

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
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r} was asked for but no GPU is visible; use device='auto' or 'cpu'")
    return dev
