"""Reference numbers for ReflectionPad2D and PixelShuffle1D/2D/3D, computed with MXNet 1.9.1.

Run from the repository root:  /work/venvs/mx/bin/python tests/oracle/gen_conv_spatial.py
Writes tests/data/conv_spatial.npz with, per case ``c``: ``c:args`` (JSON: layer class, its
module ('nn' or 'contrib') and the constructor argument), ``c:x``, ``c:dy``, ``c:y``, ``c:gx``.
The PixelShuffle shapes are the examples of the Gluon reference pages.
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

CASES = {
    'reflect_1': ('nn', 'ReflectionPad2D', 1, (2, 3, 4, 5)),
    'reflect_3': ('nn', 'ReflectionPad2D', 3, (1, 2, 5, 4)),
    'reflect_tuple': ('nn', 'ReflectionPad2D', [0, 0, 0, 0, 2, 1, 0, 3], (1, 2, 4, 5)),
    'shuffle1d': ('contrib', 'PixelShuffle1D', 2, (1, 8, 3)),
    'shuffle2d': ('contrib', 'PixelShuffle2D', [2, 3], (1, 12, 3, 5)),
    'shuffle2d_int': ('contrib', 'PixelShuffle2D', 2, (2, 8, 2, 3)),
    'shuffle3d': ('contrib', 'PixelShuffle3D', [2, 3, 4], (1, 48, 3, 5, 7)),
}


def main():
    rng = np.random.default_rng(11)
    arrays = {}
    for case, (mod, cls, arg, xshape) in CASES.items():
        ns = gluon.nn if mod == 'nn' else gluon.contrib.nn
        layer = getattr(ns, cls)(tuple(arg) if isinstance(arg, list) else arg)
        xv = rng.standard_normal(xshape).astype(np.float32)
        x = mx.nd.array(xv)
        x.attach_grad()
        with autograd.record():
            y = layer(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(mx.nd.array(dy))
        arrays[case + ':args'] = np.array(json.dumps({'cls': cls, 'arg': arg}))
        arrays[case + ':x'] = xv
        arrays[case + ':dy'] = dy
        arrays[case + ':y'] = y.asnumpy()
        arrays[case + ':gx'] = x.grad.asnumpy()
    path = os.path.join(os.path.dirname(__file__), '..', 'data', 'conv_spatial.npz')
    np.savez_compressed(path, **arrays)
    print('wrote', os.path.normpath(path), len(CASES), 'cases')


if __name__ == '__main__':
    main()
