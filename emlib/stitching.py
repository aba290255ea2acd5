"""Sliding-window inference over whole slices, stitched back into the stack.

The authors resize each whole slice so that its long side is 1022 pixels and
run the model once (``authors-protocol.md`` §2). This module is the other
option: cut the slice into overlapping windows at native resolution, run the
model on each window, and average the overlapping logits back into one map of
the full slice. :func:`sliding_window_predict` does one slice,
:func:`predict_stack` a whole (Z, H, W) stack.

Tiling rules
------------
* Windows step by ``stride`` (or ``window * (1 - overlap)``); the last window
  of each row/column is moved back to end exactly at the border, so every pixel
  is covered and no window reaches outside the image.
* Along an axis where the image is smaller than the window, the image is padded
  (``reflect``, or ``replicate`` when the image is too small to reflect) up to
  the next multiple of ``multiple`` (the patch size of a ViT), the model sees
  that smaller window, and the output is cropped back.
* Overlapping logits are averaged, either uniformly or with a smooth Gaussian
  weight that trusts window centres more than window borders. The running sums
  are kept in float64, so an identity model is reproduced exactly with uniform
  weights.

Examples
--------
>>> import torch
>>> image = torch.rand(1, 50, 70)
>>> out = sliding_window_predict(lambda x: x, image, window=32, overlap=0.5)
>>> out.shape, bool(torch.equal(out, image))
(torch.Size([1, 50, 70]), True)
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from emlib.errors import ConfigError, ShapeError

__all__ = ["sliding_window_predict", "predict_stack", "window_positions", "window_weights"]

PredictFn = Callable[[torch.Tensor], torch.Tensor]
IntPair = Union[int, Sequence[int]]


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)  # type: ignore[assignment]
        if len(pair) != 2:
            raise ConfigError(f"{name}={value!r} has {len(pair)} values; pass one int or a (height, width) pair")
    if min(pair) < 1:
        raise ConfigError(f"{name}={value!r} is not positive; pass sizes of at least 1 pixel")
    return pair  # type: ignore[return-value]


def window_positions(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows that cover ``range(size)``, last one flush with the border.

    Parameters
    ----------
    size : int
        Length of the image axis.
    window : int
        Window length along that axis.
    stride : int
        Step between consecutive windows.

    Returns
    -------
    starts : list of int
        ``[0]`` when ``size <= window``.

    Examples
    --------
    >>> window_positions(10, 4, 3)
    [0, 3, 6]
    >>> window_positions(11, 4, 3)
    [0, 3, 6, 7]
    """
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def window_weights(window: IntPair, *, weighting: str = "uniform", sigma_scale: float = 0.125) -> torch.Tensor:
    """Per-pixel weights of one window for averaging overlapping predictions.

    Parameters
    ----------
    window : int or (int, int)
        Window height and width.
    weighting : {'uniform', 'gaussian'}, default='uniform'
        ``'gaussian'`` uses a separable Gaussian centred on the window with
        standard deviation ``sigma_scale * window`` per axis (as nnU-Net does),
        clipped below at 1e-6 so every pixel keeps a positive weight.
    sigma_scale : float, default=0.125
        Gaussian width relative to the window size.

    Returns
    -------
    weights : torch.Tensor of shape (h, w), dtype float64
        Maximum 1.
    """
    h, w = _pair(window, "window")
    if weighting == "uniform":
        return torch.ones(h, w, dtype=torch.float64)
    if weighting != "gaussian":
        raise ConfigError(f"weighting={weighting!r} is not known; pass 'uniform' or 'gaussian'")
    if sigma_scale <= 0:
        raise ConfigError(f"sigma_scale={sigma_scale!r} is not positive; pass a value such as 0.125")

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        return torch.exp(-0.5 * (x / (sigma_scale * n)) ** 2)

    g = axis(h)[:, None] * axis(w)[None, :]
    return (g / g.max()).clamp_min(1e-6)


def _to_chw(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise ConfigError(f"image of type {type(image).__name__} is not supported; pass a torch.Tensor or numpy array")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ShapeError(
            f"image has shape {tuple(image.shape)}; pass one slice as (C, H, W) or (H, W), "
            "or use predict_stack for a stack"
        )
    if not image.is_floating_point():
        image = image.float()
    return image


def _pad_axis(x: torch.Tensor, amount: int, dim: int) -> torch.Tensor:
    """Pad ``x`` (1, C, H, W) at the end of ``dim`` (2 or 3) by ``amount`` pixels."""
    if amount == 0:
        return x
    size = x.shape[dim]
    mode = "reflect" if amount < size else "replicate"
    pad = (0, 0, 0, amount) if dim == 2 else (0, amount, 0, 0)
    if x.dtype not in (torch.float32, torch.float64):
        return F.pad(x.float(), pad, mode=mode).to(x.dtype)
    return F.pad(x, pad, mode=mode)


def _resolve_stride(window: tuple[int, int], stride: IntPair | None, overlap: float | None) -> tuple[int, int]:
    if stride is not None and overlap is not None:
        raise ConfigError(
            f"both stride={stride!r} and overlap={overlap!r} were given; pass only one of them"
        )
    if stride is not None:
        s = _pair(stride, "stride")
        if s[0] > window[0] or s[1] > window[1]:
            raise ConfigError(f"stride={stride!r} is larger than window={window}; pass a stride of at most the window")
        return s
    ov = 0.25 if overlap is None else float(overlap)
    if not 0.0 <= ov < 1.0:
        raise ConfigError(f"overlap={overlap!r} is outside [0, 1); pass a fraction such as 0.25")
    return (max(1, int(round(window[0] * (1 - ov)))), max(1, int(round(window[1] * (1 - ov)))))


def _batched(items: list[tuple[int, int]], n: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _check_window(window: IntPair, multiple: int, batch_size: int) -> tuple[tuple[int, int], int]:
    """``window`` as (height, width) and ``multiple`` as an int, checked with ``batch_size`` before any work."""
    win = _pair(window, "window")
    if int(multiple) < 1:
        raise ConfigError(f"multiple={multiple!r} is not positive; pass the patch size, e.g. 14, or 1")
    multiple = int(multiple)
    if win[0] % multiple or win[1] % multiple:
        raise ConfigError(
            f"window={win} is not a multiple of multiple={multiple}; pass a window such as "
            f"{(max(1, win[0] // multiple) * multiple, max(1, win[1] // multiple) * multiple)}"
        )
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not positive; pass at least 1")
    return win, multiple


def _pad_short_axes(x: torch.Tensor, window: tuple[int, int], multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``x`` (C, H, W) as a batch of one, each axis shorter than the window padded to the next multiple of
    ``multiple``; returns it and the window shrunk to those axes."""
    xp = x[None]
    eff = []
    for dim, size, w in ((2, x.shape[1], window[0]), (3, x.shape[2], window[1])):
        if size < w:
            target = math.ceil(size / multiple) * multiple
            xp = _pad_axis(xp, target - size, dim)
            eff.append(target)
        else:
            eff.append(w)
    return xp, (eff[0], eff[1])


def _window_logits(predict_fn: PredictFn, batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``predict_fn`` of a batch of windows, checked, resized to the window ``size``, as float64 on the CPU."""
    out = predict_fn(batch)
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != len(batch):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeError(
            f"predict_fn returned {got} for a batch of shape {tuple(batch.shape)}; "
            "make it return logits of shape (B, K, h, w)"
        )
    if out.shape[-2:] != size:
        out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False)
    return out.detach().to("cpu", torch.float64)


def _weighted_sum(
    predict_fn: PredictFn, xp: torch.Tensor, tiles: list[tuple[int, int]], weights: torch.Tensor, *,
    batch_size: int, device: str | torch.device | None,
) -> torch.Tensor:
    """The sum (K, H, W) float64 of every window's logits times ``weights``, ``batch_size`` windows per call."""
    wh, ww = weights.shape
    acc: torch.Tensor | None = None
    with torch.no_grad():
        for chunk in _batched(tiles, batch_size):
            batch = torch.stack([xp[0, :, y : y + wh, x0 : x0 + ww] for y, x0 in chunk])
            if device is not None:
                batch = batch.to(device)
            out = _window_logits(predict_fn, batch, (wh, ww))
            if acc is None:
                acc = torch.zeros(out.shape[1], xp.shape[2], xp.shape[3], dtype=torch.float64)
            for o, (y, x0) in zip(out, chunk):
                acc[:, y : y + wh, x0 : x0 + ww] += o * weights
    assert acc is not None  # at least one tile always exists
    return acc


def sliding_window_predict(
    predict_fn: PredictFn,
    image: np.ndarray | torch.Tensor,
    *,
    window: IntPair,
    stride: IntPair | None = None,
    overlap: float | None = None,
    multiple: int = 1,
    batch_size: int = 4,
    weighting: str = "uniform",
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Predict one slice window by window and average the overlaps.

    Parameters
    ----------
    predict_fn : callable
        Maps a float batch (B, C, h, w) to logits (B, K, h, w), e.g. a
        backbone + head in eval mode. Outputs at another resolution are resized
        bilinearly to the window. It is called under ``torch.no_grad()``.
    image : torch.Tensor or ndarray of shape (C, H, W) or (H, W)
        One slice, already normalised the way ``predict_fn`` expects; a 2-D
        slice gets one channel. Integer input is cast to float32 unchanged.
    window : int or (int, int)
        Window height and width; each must be a multiple of ``multiple``.
    stride : int or (int, int), default=None
        Step between windows. Give either ``stride`` or ``overlap``.
    overlap : float, default=None
        Fraction of the window shared by neighbours, in [0, 1); 0.25 when
        neither ``stride`` nor ``overlap`` is given.
    multiple : int, default=1
        Size every model input must be a multiple of (the ViT patch size).
    batch_size : int, default=4
        Windows per call of ``predict_fn``.
    weighting : {'uniform', 'gaussian'}, default='uniform'
        How overlapping logits are averaged; see :func:`window_weights`.
    device : str or torch.device, default=None
        Where windows are sent before ``predict_fn``; ``None`` leaves them on
        the image's device. Outputs are gathered on the CPU.

    Returns
    -------
    logits : torch.Tensor of shape (K, H, W), dtype float32
        Stitched prediction of the whole slice, on the CPU.

    Raises
    ------
    ConfigError
        If the window is not a multiple of ``multiple``, or an option is invalid.
    ShapeError
        If ``image`` is not one slice, or ``predict_fn`` returns a wrong shape.
    """
    x = _to_chw(image)
    win, multiple = _check_window(window, multiple, batch_size)
    strides = _resolve_stride(win, stride, overlap)
    _, height, width = x.shape
    # Axes shorter than the window: pad to the next multiple and shrink the window to it.
    xp, (wh, ww) = _pad_short_axes(x, win, multiple)
    ph, pw = xp.shape[2], xp.shape[3]
    tiles = [(y, x0) for y in window_positions(ph, wh, strides[0]) for x0 in window_positions(pw, ww, strides[1])]
    weights = window_weights((wh, ww), weighting=weighting)
    wsum = torch.zeros(ph, pw, dtype=torch.float64)
    for y, x0 in tiles:
        wsum[y : y + wh, x0 : x0 + ww] += weights
    acc = _weighted_sum(predict_fn, xp, tiles, weights, batch_size=int(batch_size), device=device)
    result = acc / wsum
    return result[:, :height, :width].to(torch.float32)


def _stack_array(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """A stack as a numpy array of shape (Z, H, W) or (Z, C, H, W), checked."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ShapeError(f"images has shape {images.shape}; pass a stack of shape (Z, H, W) or (Z, C, H, W)")
    return images


def _slice_input(
    images: np.ndarray, z: int, normalise: Callable[[np.ndarray], np.ndarray | torch.Tensor] | None
) -> np.ndarray | torch.Tensor:
    """Slice ``z`` of the stack as the (C, H, W) input of :func:`sliding_window_predict`."""
    if normalise is None:
        return images[z] if images.ndim == 4 else images[z][None]
    x = normalise(images[z : z + 1])
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if x.ndim != 4 or x.shape[0] != 1:
        raise ShapeError(f"normalise returned shape {tuple(x.shape)} for one slice; make it return (1, C, H, W)")
    return x[0]


def _as_output(logits: torch.Tensor, output: str) -> np.ndarray:
    """Stitched logits (K, H, W) as ``output``: themselves, their softmax, or the argmax labels as uint8."""
    if output == "labels":
        if logits.shape[0] > 255:
            raise ConfigError(f"labels for {logits.shape[0]} classes do not fit uint8; pass output='logits'")
        return logits.argmax(0).to(torch.uint8).numpy()
    if output == "probabilities":
        return torch.softmax(logits, dim=0).numpy()
    return logits.numpy()


def predict_stack(
    predict_fn: PredictFn,
    images: np.ndarray | torch.Tensor,
    *,
    window: IntPair,
    stride: IntPair | None = None,
    overlap: float | None = None,
    multiple: int = 1,
    batch_size: int = 4,
    weighting: str = "uniform",
    normalise: Callable[[np.ndarray], np.ndarray | torch.Tensor] | None = None,
    output: str = "logits",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Run :func:`sliding_window_predict` on every slice of a stack.

    Parameters
    ----------
    predict_fn : callable
        Maps (B, C, h, w) to logits (B, K, h, w).
    images : ndarray or torch.Tensor of shape (Z, H, W) or (Z, C, H, W)
        The stack. Without ``normalise`` a (Z, H, W) stack is given one channel
        and cast to float32 as it is.
    window, stride, overlap, multiple, batch_size, weighting, device
        As in :func:`sliding_window_predict`.
    normalise : callable, default=None
        Maps one slice ``images[z:z+1]`` (1, H, W) uint8 to a float batch
        (1, C, H, W), e.g. grey → RGB + ImageNet statistics from the data layer.
    output : {'logits', 'probabilities', 'labels'}, default='logits'
        What to return: raw stitched logits, their softmax over classes, or the
        argmax class per pixel.
    progress : bool, default=False
        Show a tqdm bar over slices.

    Returns
    -------
    prediction : ndarray
        (Z, K, H, W) float32 for ``'logits'`` and ``'probabilities'``;
        (Z, H, W) uint8 for ``'labels'``.
    """
    if output not in ("logits", "probabilities", "labels"):
        raise ConfigError(f"output={output!r} is not known; pass 'logits', 'probabilities' or 'labels'")
    images = _stack_array(images)
    results = []
    for z in tqdm(range(images.shape[0]), desc="slices", disable=not progress):
        logits = sliding_window_predict(
            predict_fn, _slice_input(images, z, normalise), window=window, stride=stride, overlap=overlap,
            multiple=multiple, batch_size=batch_size, weighting=weighting, device=device,
        )
        results.append(_as_output(logits, output))
    return np.stack(results)
