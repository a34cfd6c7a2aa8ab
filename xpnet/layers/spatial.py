"""Spatial rearrangement layers: ReflectionPad2D and PixelShuffle1D/2D/3D.

Both are compositions of differentiable shape ops (``pad``, ``reshape``, ``transpose``), so
their gradients come from those ops.

Example::

    nn.ReflectionPad2D(3)(nd.zeros((16, 3, 224, 224))).shape      # (16, 3, 230, 230)
    nn.PixelShuffle2D((2, 3))(nd.zeros((1, 12, 3, 5))).shape       # (1, 2, 6, 15)
"""
import numbers

from .. import ops
from .block import HybridBlock

__all__ = ['ReflectionPad2D', 'PixelShuffle1D', 'PixelShuffle2D', 'PixelShuffle3D']


class ReflectionPad2D(HybridBlock):
    """Pads the last two axes of an (N, C, H, W) input with the reflection of the border
    (the border element itself is not repeated): ``H_out = H + 2 * padding``.

    Args:
        padding: int, or MXNet's 8-tuple ``pad_width`` ``(0, 0, 0, 0, top, bottom, left,
            right)``.
    """

    def __init__(self, padding=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, numbers.Integral):
            padding = (0, 0, 0, 0, padding, padding, padding, padding)
        padding = tuple(int(p) for p in padding)
        if len(padding) != 8 or any(p < 0 for p in padding) or any(padding[:4]):
            raise ValueError(f'ReflectionPad2D: padding must be a non-negative int or an '
                             f'8-tuple (0, 0, 0, 0, top, bottom, left, right), got {padding!r}')
        self._padding = padding

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f'ReflectionPad2D: expected a 4-D (N, C, H, W) input, got shape '
                             f'{x.shape}')
        p = self._padding
        for axis, (before, after) in ((2, p[4:6]), (3, p[6:8])):
            if max(before, after) >= x.shape[axis]:
                raise ValueError(f'ReflectionPad2D: padding {max(before, after)} must be '
                                 f'smaller than the padded axis (input shape {x.shape})')
        return ops.pad(x, ((0, 0), (0, 0), p[4:6], p[6:8]), mode='reflect')

    def __repr__(self):
        return f'ReflectionPad2D(padding={self._padding})'


class _PixelShuffle(HybridBlock):
    """(N, C*prod(f), *S) -> (N, C, S_1*f_1, ...): channel groups become pixel blocks."""
    _nd = 2

    def __init__(self, factor):
        super().__init__()
        nd = self._nd
        name = type(self).__name__
        if isinstance(factor, numbers.Integral):
            factors = (int(factor),) * nd
        else:
            factors = tuple(int(f) for f in factor)
        if len(factors) != nd or any(f < 1 for f in factors):
            raise ValueError(f'{name}: factor must be a positive int or a tuple of {nd} '
                             f'positive ints, got {factor!r}')
        self._factors = factors

    def forward(self, x):
        nd = self._nd
        name = type(self).__name__
        f = self._factors
        if x.ndim != nd + 2:
            raise ValueError(f'{name}: expected a {nd + 2}-D input (N, C, ...), got shape '
                             f'{x.shape}')
        n, cf = x.shape[:2]
        block = 1
        for v in f:
            block *= v
        if cf % block:
            raise ValueError(f'{name}: {cf} input channels (shape {x.shape}) are not divisible '
                             f'by the product of the factors {f} = {block}')
        c = cf // block
        size = x.shape[2:]
        # (N, C, f1..fn, S1..Sn) -> (N, C, S1, f1, ..., Sn, fn)
        y = x.reshape((n, c) + f + size)
        axes = (0, 1) + tuple(a for i in range(nd) for a in (2 + nd + i, 2 + i))
        y = y.transpose(axes)
        return y.reshape((n, c) + tuple(s * v for s, v in zip(size, f)))

    def __repr__(self):
        f = self._factors[0] if self._nd == 1 else self._factors
        return f'{type(self).__name__}({f})'


class PixelShuffle1D(_PixelShuffle):
    """Pixel shuffle along W: (N, f*C, W) -> (N, C, W*f).

    Example::

        PixelShuffle1D(2)(nd.zeros((1, 8, 3))).shape      # (1, 4, 6)
    """
    _nd = 1


class PixelShuffle2D(_PixelShuffle):
    """Pixel shuffle along H and W: (N, f1*f2*C, H, W) -> (N, C, H*f1, W*f2).

    Example::

        PixelShuffle2D((2, 3))(nd.zeros((1, 12, 3, 5))).shape     # (1, 2, 6, 15)
    """
    _nd = 2


class PixelShuffle3D(_PixelShuffle):
    """Pixel shuffle along D, H and W: (N, f1*f2*f3*C, D, H, W) -> (N, C, D*f1, H*f2, W*f3).

    Example::

        PixelShuffle3D((2, 3, 4))(nd.zeros((1, 48, 3, 5, 7))).shape   # (1, 2, 6, 15, 28)
    """
    _nd = 3
