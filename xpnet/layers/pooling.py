"""Pooling layers: Max/Avg Pool 1D/2D/3D and their global versions (Gluon's ``nn``).

One class, :class:`_Pooling`, over ``xpnet.ops.pooling``. Conventions (see
``xpnet/ops/conv.py`` for the details):

- ``strides=None`` means ``pool_size``; padding is symmetric and ignored by max pooling;
- ``ceil_mode=True`` computes ``ceil((x + 2p - k) / s) + 1`` outputs and keeps a last
  window that starts in the right padding, as MXNet does. Where MXNet would output
  ``-FLT_MAX`` for a max window holding no input element, xpnet outputs 0;
- ``count_include_pad`` (average pooling) chooses the divisor: the window clipped to the
  padded input, or only the real input elements;
- max-pool gradients go to the first maximum of each window.

Example::

    pool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
    y = pool(x)                                    # (N, C, ceil-or-floor(...), ...)
    g = nn.GlobalAvgPool2D()(x)                    # (N, C, 1, 1)
"""

from .. import ops
from ..ops._base import int_tuple
from .block import HybridBlock
from .conv import check_input_rank, check_layout

__all__ = ['MaxPool1D', 'MaxPool2D', 'MaxPool3D', 'AvgPool1D', 'AvgPool2D', 'AvgPool3D',
           'GlobalMaxPool1D', 'GlobalMaxPool2D', 'GlobalMaxPool3D', 'GlobalAvgPool1D',
           'GlobalAvgPool2D', 'GlobalAvgPool3D']


def _ntuple(value, nd, what, layer, low):
    return int_tuple(value, nd, what, layer, low)


class _Pooling(HybridBlock):
    """N-d pooling layer (see the module docstring).

    Args:
        pool_size: window size (int or tuple of ``nd`` ints).
        strides: step (int, tuple or None for ``pool_size``).
        padding: symmetric padding (int or tuple).
        ceil_mode: ceil instead of floor in the output size.
        global_pool: pool over all spatial positions.
        pool_type: 'max' or 'avg'.
        layout: 'NCW'/'NWC', 'NCHW'/'NHWC' or 'NCDHW'/'NDHWC'.
        count_include_pad: (average) divide by the padded window size.
    """
    _nd = 2

    def __init__(self, pool_size, strides, padding, ceil_mode, global_pool, pool_type,
                 layout, count_include_pad=None, **kwargs):
        super().__init__(**kwargs)
        nd = self._nd
        name = type(self).__name__
        check_layout(layout, nd, name)
        self._layout = layout
        self._kernel = _ntuple(pool_size, nd, 'pool_size', name, 1)
        self._strides = self._kernel if strides is None else \
            _ntuple(strides, nd, 'strides', name, 1)
        self._padding = _ntuple(padding, nd, 'padding', name, 0)
        if not global_pool and any(p >= k for p, k in zip(self._padding, self._kernel)):
            raise ValueError(f'{name}: padding {self._padding} must be smaller than pool_size '
                             f'{self._kernel}')
        self._ceil_mode = bool(ceil_mode)
        self._global_pool = bool(global_pool)
        self._pool_type = pool_type
        self._count_include_pad = True if count_include_pad is None else bool(count_include_pad)

    def forward(self, x):
        name = type(self).__name__
        check_input_rank(x, self._nd, self._layout, name)
        return ops.pooling(x, self._kernel, self._strides, self._padding, self._pool_type,
                           self._ceil_mode, self._count_include_pad, self._layout,
                           self._global_pool, name=name)

    def __repr__(self):
        return (f'{type(self).__name__}(size={self._kernel}, stride={self._strides}, '
                f'padding={self._padding}, ceil_mode={self._ceil_mode}, '
                f'global_pool={self._global_pool}, pool_type={self._pool_type}, '
                f'layout={self._layout})')


class MaxPool1D(_Pooling):
    """Max pooling over 'W' of (N, C, W) ('NCW') or (N, W, C) ('NWC') input.
    Output width ``floor((W + 2p - k) / s) + 1`` (ceil with ``ceil_mode``)."""
    _nd = 1

    def __init__(self, pool_size=2, strides=None, padding=0, layout='NCW', ceil_mode=False,
                 **kwargs):
        super().__init__(pool_size, strides, padding, ceil_mode, False, 'max', layout,
                         **kwargs)


class MaxPool2D(_Pooling):
    """Max pooling over 'H' and 'W' of 'NCHW' or 'NHWC' input.

    Example::

        nn.MaxPool2D(pool_size=2, strides=2)(x)     # halves H and W
    """
    _nd = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding=0, layout='NCHW',
                 ceil_mode=False, **kwargs):
        super().__init__(pool_size, strides, padding, ceil_mode, False, 'max', layout,
                         **kwargs)


class MaxPool3D(_Pooling):
    """Max pooling over 'D', 'H' and 'W' of 'NCDHW' or 'NDHWC' input."""
    _nd = 3

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding=0, ceil_mode=False,
                 layout='NCDHW', **kwargs):
        super().__init__(pool_size, strides, padding, ceil_mode, False, 'max', layout,
                         **kwargs)


class AvgPool1D(_Pooling):
    """Average pooling over 'W'; ``count_include_pad=False`` excludes the padding from
    the divisor."""
    _nd = 1

    def __init__(self, pool_size=2, strides=None, padding=0, layout='NCW', ceil_mode=False,
                 count_include_pad=True, **kwargs):
        super().__init__(pool_size, strides, padding, ceil_mode, False, 'avg', layout,
                         count_include_pad, **kwargs)


class AvgPool2D(_Pooling):
    """Average pooling over 'H' and 'W'; ``count_include_pad=False`` excludes the padding
    from the divisor."""
    _nd = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding=0, ceil_mode=False,
                 layout='NCHW', count_include_pad=True, **kwargs):
        super().__init__(pool_size, strides, padding, ceil_mode, False, 'avg', layout,
                         count_include_pad, **kwargs)


class AvgPool3D(_Pooling):
    """Average pooling over 'D', 'H' and 'W'."""
    _nd = 3

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding=0, ceil_mode=False,
                 layout='NCDHW', count_include_pad=True, **kwargs):
        super().__init__(pool_size, strides, padding, ceil_mode, False, 'avg', layout,
                         count_include_pad, **kwargs)


class _GlobalPool(_Pooling):
    def __init__(self, pool_type, layout, **kwargs):
        super().__init__((1,) * self._nd, None, 0, True, True, pool_type, layout, **kwargs)


class GlobalMaxPool1D(_GlobalPool):
    """Max over all of 'W': (N, C, W) -> (N, C, 1)."""
    _nd = 1

    def __init__(self, layout='NCW', **kwargs):
        super().__init__('max', layout, **kwargs)


class GlobalMaxPool2D(_GlobalPool):
    """Max over 'H' and 'W': (N, C, H, W) -> (N, C, 1, 1)."""
    _nd = 2

    def __init__(self, layout='NCHW', **kwargs):
        super().__init__('max', layout, **kwargs)


class GlobalMaxPool3D(_GlobalPool):
    """Max over 'D', 'H' and 'W': (N, C, D, H, W) -> (N, C, 1, 1, 1)."""
    _nd = 3

    def __init__(self, layout='NCDHW', **kwargs):
        super().__init__('max', layout, **kwargs)


class GlobalAvgPool1D(_GlobalPool):
    """Mean over all of 'W': (N, C, W) -> (N, C, 1)."""
    _nd = 1

    def __init__(self, layout='NCW', **kwargs):
        super().__init__('avg', layout, **kwargs)


class GlobalAvgPool2D(_GlobalPool):
    """Mean over 'H' and 'W': (N, C, H, W) -> (N, C, 1, 1)."""
    _nd = 2

    def __init__(self, layout='NCHW', **kwargs):
        super().__init__('avg', layout, **kwargs)


class GlobalAvgPool3D(_GlobalPool):
    """Mean over 'D', 'H' and 'W': (N, C, D, H, W) -> (N, C, 1, 1, 1)."""
    _nd = 3

    def __init__(self, layout='NCDHW', **kwargs):
        super().__init__('avg', layout, **kwargs)
