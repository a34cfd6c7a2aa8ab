"""Reference numbers for the convolution layers, computed with MXNet 1.9.1 (CPU).

Run with the MXNet venv from the repository root:
    /work/venvs/mx/bin/python tests/oracle/gen_conv.py
Writes tests/data/conv.npz: for each case ``c``, ``c:args`` (JSON of the layer class and
its keyword arguments), ``c:x`` (input), ``c:weight``/``c:bias`` (parameters), ``c:dy``
(head gradient), ``c:y`` (output) and ``c:gx``/``c:gweight``/``c:gbias`` (gradients).
MXNet runs only channels-first layouts on CPU; the tests derive the channels-last cases by
transposing these.
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

CASES = {
    'c1d_basic': ('Conv1D', dict(channels=4, kernel_size=3, strides=2, padding=1), (2, 3, 9)),
    'c1d_dil_groups': ('Conv1D', dict(channels=6, kernel_size=2, dilation=3, groups=3,
                                      padding=2), (2, 3, 8)),
    'c2d_basic': ('Conv2D', dict(channels=5, kernel_size=3, padding=1), (2, 3, 6, 7)),
    'c2d_odd': ('Conv2D', dict(channels=4, kernel_size=(3, 2), strides=(2, 1), padding=(1, 0),
                               dilation=(1, 2)), (2, 3, 7, 8)),
    'c2d_groups': ('Conv2D', dict(channels=6, kernel_size=3, groups=2, strides=2, padding=1),
                   (2, 4, 7, 7)),
    'c2d_depthwise': ('Conv2D', dict(channels=8, kernel_size=3, groups=4, padding=1),
                      (2, 4, 5, 6)),
    'c2d_stride_gt_kernel': ('Conv2D', dict(channels=3, kernel_size=2, strides=3),
                             (2, 2, 8, 7)),
    'c2d_dilate_pad': ('Conv2D', dict(channels=3, kernel_size=3, dilation=2, padding=2),
                       (1, 2, 6, 5)),
    'c2d_relu_nobias': ('Conv2D', dict(channels=4, kernel_size=(1, 3), activation='relu',
                                       use_bias=False), (2, 3, 4, 6)),
    'c3d_basic': ('Conv3D', dict(channels=3, kernel_size=(2, 3, 2), strides=(1, 2, 1),
                                 padding=(1, 0, 1)), (2, 2, 4, 6, 5)),
    'c3d_groups': ('Conv3D', dict(channels=4, kernel_size=2, groups=2, dilation=(2, 1, 1)),
                   (1, 4, 5, 4, 3)),
    't1d_basic': ('Conv1DTranspose', dict(channels=3, kernel_size=3, strides=2, padding=1,
                                          output_padding=1), (2, 4, 5)),
    't2d_groups': ('Conv2DTranspose', dict(channels=4, kernel_size=4, strides=2, padding=1,
                                           groups=2, in_channels=6), (2, 6, 4, 5)),
    't2d_odd': ('Conv2DTranspose', dict(channels=3, kernel_size=(3, 2), strides=(2, 3),
                                        padding=(1, 0), output_padding=(1, 2),
                                        dilation=(1, 1)), (2, 2, 3, 4)),
    't2d_dilate': ('Conv2DTranspose', dict(channels=2, kernel_size=3, dilation=2, padding=1,
                                           activation='tanh'), (1, 3, 4, 4)),
    't3d_basic': ('Conv3DTranspose', dict(channels=2, kernel_size=(2, 3, 2),
                                          strides=(2, 1, 2), padding=(0, 1, 1),
                                          output_padding=(1, 0, 0)), (1, 3, 3, 4, 3)),
    # stride-1 "same" layers that do not widen the channels: their input gradient (resp. a
    # transposed layer's forward) runs as a convolution with the flipped kernel
    'c2d_same_narrow': ('Conv2D', dict(channels=3, kernel_size=3, padding=1), (2, 5, 6, 5)),
    'c2d_same_dilated_groups': ('Conv2D', dict(channels=4, kernel_size=(3, 2), padding=(2, 1),
                                               dilation=2, groups=2), (1, 6, 5, 6)),
    't2d_same_wide': ('Conv2DTranspose', dict(channels=6, kernel_size=3, padding=1),
                      (2, 4, 5, 4)),
}


def run(cls, kwargs, xshape, rng):
    layer = getattr(gluon.nn, cls)(**kwargs)
    layer.initialize()
    x = mx.nd.array(rng.standard_normal(xshape).astype(np.float32))
    layer(x)     # finish deferred initialization
    params = {}
    for name, p in layer.collect_params().items():
        short = name.split('_')[-1]
        val = rng.standard_normal(p.shape).astype(np.float32) * 0.5
        p.set_data(mx.nd.array(val))
        params[short] = val
    x.attach_grad()
    with autograd.record():
        y = layer(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(mx.nd.array(dy))
    out = {'x': x.asnumpy(), 'dy': dy, 'y': y.asnumpy(), 'gx': x.grad.asnumpy()}
    for name, p in layer.collect_params().items():
        short = name.split('_')[-1]
        out[short] = params[short]
        out['g' + short] = p.grad().asnumpy()
    return out


def main():
    rng = np.random.default_rng(42)
    arrays = {}
    for case, (cls, kwargs, xshape) in CASES.items():
        res = run(cls, kwargs, xshape, rng)
        arrays[case + ':args'] = np.array(json.dumps({'cls': cls, 'kwargs': kwargs}))
        for k, v in res.items():
            arrays[f'{case}:{k}'] = v
    path = os.path.join(os.path.dirname(__file__), '..', 'data', 'conv.npz')
    np.savez_compressed(path, **arrays)
    print('wrote', os.path.normpath(path), len(CASES), 'cases')


if __name__ == '__main__':
    main()
