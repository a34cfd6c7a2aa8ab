"""Reference numbers for the pooling layers, computed with MXNet 1.9.1 (CPU).

Run from the repository root:  /work/venvs/mx/bin/python tests/oracle/gen_conv_pool.py
Writes tests/data/conv_pool.npz with, per case ``c``: ``c:args`` (JSON: layer class and
keyword arguments), ``c:x``, ``c:dy`` (head gradient), ``c:y`` and ``c:gx``.
Case ``*_ties`` uses small integers so that windows hold several equal maxima.
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

CASES = {
    'max1d_basic': ('MaxPool1D', dict(), (2, 3, 8)),
    'max1d_ceil': ('MaxPool1D', dict(pool_size=3, strides=2, padding=1, ceil_mode=True),
                   (2, 2, 8)),
    'max2d_basic': ('MaxPool2D', dict(), (2, 3, 6, 8)),
    'max2d_overlap': ('MaxPool2D', dict(pool_size=3, strides=2, padding=1), (2, 2, 7, 6)),
    'max2d_ceil_empty': ('MaxPool2D', dict(pool_size=2, strides=2, padding=1, ceil_mode=True),
                         (2, 2, 5, 7)),
    'max2d_stride_gt': ('MaxPool2D', dict(pool_size=(2, 1), strides=3), (1, 2, 8, 7)),
    'max2d_odd': ('MaxPool2D', dict(pool_size=(3, 2), strides=(1, 2), padding=(1, 0)),
                  (2, 2, 5, 7)),
    'max2d_ties': ('MaxPool2D', dict(pool_size=3, strides=2, padding=1), (2, 2, 6, 6)),
    'max3d_ceil': ('MaxPool3D', dict(pool_size=2, strides=(1, 2, 2), padding=(1, 0, 1),
                                     ceil_mode=True), (1, 2, 3, 5, 4)),
    'avg1d_nopad': ('AvgPool1D', dict(pool_size=3, strides=2, padding=1,
                                      count_include_pad=False), (2, 2, 7)),
    'avg2d_basic': ('AvgPool2D', dict(), (2, 3, 6, 4)),
    'avg2d_pad': ('AvgPool2D', dict(pool_size=3, strides=2, padding=1), (2, 2, 7, 6)),
    'avg2d_pad_excl': ('AvgPool2D', dict(pool_size=3, strides=2, padding=1,
                                         count_include_pad=False), (2, 2, 7, 6)),
    'avg2d_ceil_empty': ('AvgPool2D', dict(pool_size=2, strides=2, padding=1, ceil_mode=True),
                         (2, 2, 5, 7)),
    'avg2d_ceil_empty_excl': ('AvgPool2D', dict(pool_size=2, strides=2, padding=1,
                                                ceil_mode=True, count_include_pad=False),
                              (2, 2, 5, 7)),
    'avg2d_ceil_stride_gt': ('AvgPool2D', dict(pool_size=2, strides=3, ceil_mode=True),
                             (1, 2, 7, 8)),
    'avg3d_ceil': ('AvgPool3D', dict(pool_size=(2, 3, 2), strides=2, padding=1,
                                     ceil_mode=True), (1, 2, 4, 5, 5)),
    'gmax1d': ('GlobalMaxPool1D', dict(), (2, 3, 7)),
    'gmax2d': ('GlobalMaxPool2D', dict(), (2, 3, 4, 5)),
    'gmax3d': ('GlobalMaxPool3D', dict(), (1, 2, 3, 4, 2)),
    'gavg1d': ('GlobalAvgPool1D', dict(), (2, 3, 7)),
    'gavg2d': ('GlobalAvgPool2D', dict(), (2, 3, 4, 5)),
    'gavg3d': ('GlobalAvgPool3D', dict(), (1, 2, 3, 4, 2)),
}


def main():
    rng = np.random.default_rng(7)
    arrays = {}
    for case, (cls, kwargs, xshape) in CASES.items():
        layer = getattr(gluon.nn, cls)(**kwargs)
        if case.endswith('_ties'):
            xv = rng.integers(0, 3, size=xshape).astype(np.float32)
        else:
            xv = rng.standard_normal(xshape).astype(np.float32)
        x = mx.nd.array(xv)
        x.attach_grad()
        with autograd.record():
            y = layer(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(mx.nd.array(dy))
        arrays[case + ':args'] = np.array(json.dumps({'cls': cls, 'kwargs': kwargs}))
        arrays[case + ':x'] = xv
        arrays[case + ':dy'] = dy
        arrays[case + ':y'] = y.asnumpy()
        arrays[case + ':gx'] = x.grad.asnumpy()
    path = os.path.join(os.path.dirname(__file__), '..', 'data', 'conv_pool.npz')
    np.savez_compressed(path, **arrays)
    print('wrote', os.path.normpath(path), len(CASES), 'cases')


if __name__ == '__main__':
    main()
