"""Image transforms (Gluon 1.9's ``gluon.data.vision.transforms``): Blocks applied to one
image (HWC) or a batch (NHWC), usually through ``Dataset.transform_first``.

Example::

    from xpnet.data.vision import MNIST, transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.13, 0.31)])
    train = MNIST(root).transform_first(tf)          # samples (1x28x28 float32, label)
"""
import numpy as np

from ... import random as _random
from ...backend import cpu, to_device
from ...layers.basic import Lambda, Sequential
from ...layers.block import Block, HybridBlock
from ...ndarray import NDArray, _wrap
from ...ops._base import tracked

__all__ = ['Compose', 'Cast', 'ToTensor', 'Normalize', 'RandomFlipLeftRight',
           'RandomFlipTopBottom']


def _as_nd(x, who):
    if isinstance(x, NDArray):
        return x
    if isinstance(x, np.ndarray):
        return _wrap(x, cpu(0))
    raise TypeError(f'{who}: expected an NDArray or a NumPy array, got {type(x).__name__}')


def _check_ndim(x, who, layout):
    if x.ndim not in (3, 4):
        raise ValueError(f'{who}: expected a {layout} image or a batch of them (3 or 4 '
                         f'dimensions), got shape {x.shape}')


class Compose(Sequential):
    """Applies transforms one after the other.

    Args:
        transforms: a list of transform Blocks (plain callables are wrapped in a Lambda).

    Example::

        >>> tf = Compose([ToTensor(), Normalize(0.5, 0.25)])
        >>> tf(image)      # HWC uint8 -> normalized CHW float32
    """

    def __init__(self, transforms):
        super().__init__()
        for t in transforms:
            self.add(t if isinstance(t, Block) else Lambda(t))


class Cast(HybridBlock):
    """Casts the input to ``dtype``.

    Args:
        dtype: the target data type (default float32).
    """

    def __init__(self, dtype='float32'):
        super().__init__()
        self._dtype = np.dtype(dtype)

    def forward(self, x):
        return _as_nd(x, 'Cast').astype(self._dtype)


class ToTensor(HybridBlock):
    """Converts an HWC image (or an NHWC batch) with values in [0, 255] to a float32 CHW
    (NCHW) tensor in [0, 1] (``x / 255``).
    """

    def forward(self, x):
        x = _as_nd(x, 'ToTensor')
        _check_ndim(x, 'ToTensor', 'HWC')
        axes = (2, 0, 1) if x.ndim == 3 else (0, 3, 1, 2)
        if tracked(x):   # differentiable path, for float images inside a recorded graph
            return x.astype(np.float32).transpose(*axes) / 255.0
        # Per-sample hot path of data pipelines: one fused xp call, no graph bookkeeping.
        xp = x.xp
        out = xp.divide(x.data.transpose(axes), xp.float32(255), dtype=xp.float32)
        return _wrap(out, x.context)


class Normalize(HybridBlock):
    """Normalizes a CHW tensor (or NCHW batch) per channel: ``(x[c] - mean[c]) / std[c]``.

    Args:
        mean: a number (every channel) or one value per channel.
        std: a number or one value per channel.

    Example::

        >>> Normalize(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))(tensor)
    """

    def __init__(self, mean=0.0, std=1.0):
        super().__init__()
        self._mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self._std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self._mean.size == 0 or self._std.size == 0 or np.any(self._std == 0):
            raise ValueError(f'Normalize: mean and std need values and std must be non-zero, '
                             f'got mean={mean!r}, std={std!r}')
        self._consts = {}   # (context, dtype) -> (mean, std) device arrays of shape (C, 1, 1)

    def _constants(self, ctx, dtype):
        key = (ctx, dtype)
        if key not in self._consts:
            self._consts[key] = tuple(to_device(v.astype(dtype).reshape(-1, 1, 1), ctx)
                                      for v in (self._mean, self._std))
        return self._consts[key]

    def forward(self, x):
        x = _as_nd(x, 'Normalize')
        _check_ndim(x, 'Normalize', 'CHW')
        channels = x.shape[-3]
        for name, v in (('mean', self._mean), ('std', self._std)):
            if v.size not in (1, channels):
                raise ValueError(f'Normalize: {name} has {v.size} values but the input has '
                                 f'{channels} channels (shape {x.shape})')
        if x.dtype.kind != 'f':
            x = x.astype(np.float32)
        mean, std = self._constants(x.context, x.dtype)
        if tracked(x):
            return (x - _wrap(mean, x.context)) / _wrap(std, x.context)
        xp = x.xp
        out = xp.subtract(x.data, mean)
        xp.divide(out, std, out=out)
        return _wrap(out, x.context)


class _RandomFlip(HybridBlock):
    _axis = None   # counted from the end: HWC images flip W at -2 and H at -3

    def forward(self, x):
        x = _as_nd(x, type(self).__name__)
        if x.ndim < 3:
            raise ValueError(f'{type(self).__name__}: expected an HWC image, got shape {x.shape}')
        if _random.generator().random() < 0.5:
            return x.flip(x.ndim + self._axis)
        return x


class RandomFlipLeftRight(_RandomFlip):
    """Flips an HWC image (or NHWC batch) left-right with probability 0.5 (one draw from
    ``xpnet.random`` per call)."""
    _axis = -2


class RandomFlipTopBottom(_RandomFlip):
    """Flips an HWC image (or NHWC batch) top-bottom with probability 0.5."""
    _axis = -3

