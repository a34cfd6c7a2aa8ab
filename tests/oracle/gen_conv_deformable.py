"""Reference numbers for DeformableConvolution (v1) and ModulatedDeformableConvolution (v2),
computed with MXNet 1.9.1's CPU operators through ``gluon.contrib.cnn``.

Run from the repository root:  /work/venvs/mx/bin/python tests/oracle/gen_conv_deformable.py
Writes tests/data/conv_deformable.npz with, per case ``c``: ``c:args`` (JSON: class, keyword
arguments, and ``grad_parity``), ``c:x``, the four parameters under their Gluon names,
``c:dy``, ``c:y``, ``c:gx`` and ``c:g<param>``.

Offsets are made non-trivial through random offset weights and biases. ``grad_parity`` is
False (and no gradients are stored) where MXNet's gradient cannot serve as a reference:

- the v1 case whose samples touch the image border: MXNet's CPU v1 backward there
  differentiates another sampling rule than its forward (xpnet's is exact); the
  ``*_interior`` cases keep every sample inside (0, H-1) and compare gradients;
- every v2 case: MXNet 1.9.1 implements ModulatedDeformableConvolution's backward only on
  GPU ("only implemented in GPU"), so v2 is compared on the forward pass and its gradients
  are checked by finite differences in the tests.
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon.contrib import cnn

CASES = {
    # (class, kwargs, input shape, offset weight scale, offset bias range, grad parity)
    'v1_interior': ('DeformableConvolution', dict(channels=3, kernel_size=3, strides=2),
                    (2, 4, 8, 8), 0.01, (0.25, 0.75), True),
    'v1_interior_groups': ('DeformableConvolution',
                           dict(channels=4, kernel_size=(3, 2), strides=2, groups=2,
                                num_deformable_group=2, dilation=(1, 2)),
                           (1, 4, 9, 9), 0.01, (0.25, 0.75), True),
    'v1_border': ('DeformableConvolution', dict(channels=3, kernel_size=3, padding=1),
                  (2, 3, 6, 5), 0.3, (-1.2, 1.2), False),
    'v2_basic': ('ModulatedDeformableConvolution', dict(channels=3, kernel_size=3, padding=1),
                 (2, 3, 6, 5), 0.3, (-1.2, 1.2), False),
    'v2_groups': ('ModulatedDeformableConvolution',
                  dict(channels=4, kernel_size=(2, 3), strides=(1, 2), padding=(1, 0),
                       groups=2, num_deformable_group=2, dilation=(2, 1), activation='relu',
                       in_channels=4),
                  (1, 4, 7, 8), 0.2, (-0.8, 0.8), False),
    'v2_nobias': ('ModulatedDeformableConvolution',
                  dict(channels=2, kernel_size=3, strides=2, padding=1, use_bias=False,
                       offset_use_bias=False), (2, 2, 7, 6), 0.4, (0, 0), False),
}


def main():
    rng = np.random.default_rng(5)
    arrays = {}
    for case, (cls, kwargs, xshape, wscale, brange, parity) in CASES.items():
        layer = getattr(cnn, cls)(**kwargs)
        layer.initialize()
        xv = rng.standard_normal(xshape).astype(np.float32)
        x = mx.nd.array(xv)
        layer(x)
        params = {}
        for full, p in layer.collect_params().items():
            name = full[len(layer.prefix):]
            if name == 'offset_weight':
                val = rng.standard_normal(p.shape) * wscale
            elif name == 'offset_bias':
                val = rng.uniform(brange[0], brange[1], p.shape)
                if cls.startswith('Modulated'):   # mask logits: keep them moderate
                    split = p.shape[0] * 2 // 3
                    val[split:] = rng.uniform(-1, 1, p.shape[0] - split)
            else:
                val = rng.standard_normal(p.shape) * 0.5
            val = val.astype(np.float32)
            p.set_data(mx.nd.array(val))
            params[name] = val
        arrays[case + ':args'] = np.array(json.dumps({'cls': cls, 'kwargs': kwargs,
                                                      'grad_parity': parity}))
        arrays[case + ':x'] = xv
        for name, val in params.items():
            arrays[f'{case}:{name}'] = val
        if not parity:
            arrays[case + ':y'] = layer(x).asnumpy()
            continue
        x.attach_grad()
        with autograd.record():
            y = layer(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(mx.nd.array(dy))
        arrays[case + ':dy'] = dy
        arrays[case + ':y'] = y.asnumpy()
        arrays[case + ':gx'] = x.grad.asnumpy()
        for full, p in layer.collect_params().items():
            arrays[f'{case}:g{full[len(layer.prefix):]}'] = p.grad().asnumpy()
    path = os.path.join(os.path.dirname(__file__), '..', 'data', 'conv_deformable.npz')
    np.savez_compressed(path, **arrays)
    print('wrote', os.path.normpath(path), len(CASES), 'cases')


if __name__ == '__main__':
    main()
