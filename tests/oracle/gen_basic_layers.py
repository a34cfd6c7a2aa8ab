"""Reference numbers for the basic layers, computed with MXNet Gluon 1.9.1.

Run with the MXNet venv (never imported by the tests):
    /work/venvs/mx/bin/python tests/oracle/gen_basic_layers.py
Writes tests/data/basic_layers.npz: for each case '<case>/<key>' arrays: x (input), head
(output gradient), y (output), dx, param:<name> (values loaded into the layer), grad:<name>,
after:<name> (values after forward, e.g. BatchNorm running statistics), and '<case>/spec'
(the layer constructor as JSON: [class name, kwargs, train_mode]).
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

rng = np.random.RandomState(42)
PARAM_NAMES = ['running_mean', 'running_var', 'weight', 'bias', 'gamma', 'beta', 'alpha']

CASES = [
    ('dense', 'Dense', dict(units=5, in_units=4), (3, 4), True),
    ('dense_relu', 'Dense', dict(units=5, activation='relu', in_units=12), (3, 3, 4), True),
    ('dense_noflatten', 'Dense', dict(units=5, flatten=False, in_units=4), (2, 3, 4), True),
    ('dense_nobias_tanh', 'Dense', dict(units=3, use_bias=False, activation='tanh', in_units=4),
     (3, 4), True),
    ('act_relu', 'Activation', dict(activation='relu'), (3, 5), True),
    ('act_sigmoid', 'Activation', dict(activation='sigmoid'), (3, 5), True),
    ('act_tanh', 'Activation', dict(activation='tanh'), (3, 5), True),
    ('act_softrelu', 'Activation', dict(activation='softrelu'), (3, 5), True),
    ('act_softsign', 'Activation', dict(activation='softsign'), (3, 5), True),
    ('leaky', 'LeakyReLU', dict(alpha=0.1), (3, 5), True),
    ('prelu_shared', 'PReLU', dict(), (2, 3, 4), True),
    ('prelu_channels', 'PReLU', dict(in_channels=3), (2, 3, 4), True),
    ('elu', 'ELU', dict(alpha=0.7), (3, 5), True),
    ('selu', 'SELU', dict(), (3, 5), True),
    ('gelu', 'GELU', dict(), (3, 5), True),
    ('swish', 'Swish', dict(beta=1.5), (3, 5), True),
    ('embedding', 'Embedding', dict(input_dim=6, output_dim=3), 'indices', True),
    ('flatten', 'Flatten', dict(), (2, 3, 4), True),
    ('bn_train', 'BatchNorm', dict(in_channels=3), (4, 3, 2, 2), True),
    ('bn_train_axis_last', 'BatchNorm', dict(axis=-1, in_channels=3, momentum=0.8), (4, 5, 3),
     True),
    ('bn_infer', 'BatchNorm', dict(in_channels=3), (4, 3, 2), False),
    ('bn_global', 'BatchNorm', dict(in_channels=3, use_global_stats=True), (4, 3, 2), True),
    ('bn_noscale', 'BatchNorm', dict(in_channels=3, scale=False), (4, 3, 2), True),
    ('bn_nocenter', 'BatchNorm', dict(in_channels=3, center=False, epsilon=1e-3), (4, 3, 2),
     True),
    ('layernorm', 'LayerNorm', dict(in_channels=5), (3, 4, 5), True),
    ('layernorm_axis1', 'LayerNorm', dict(axis=1, in_channels=4, epsilon=1e-3), (3, 4, 5), True),
    ('instancenorm', 'InstanceNorm', dict(in_channels=3), (2, 3, 4, 2), True),
    ('instancenorm_scale', 'InstanceNorm', dict(in_channels=3, scale=True), (2, 3, 5), True),
    ('groupnorm', 'GroupNorm', dict(num_groups=2), (2, 4, 3, 2), True),
    ('groupnorm1', 'GroupNorm', dict(num_groups=1), (2, 3, 4), True),
]


def short(name):
    return max((p for p in PARAM_NAMES if name.endswith(p)), key=len)


def main():
    out = {}
    for case, cls, kwargs, shape, train in CASES:
        layer = getattr(gluon.nn, cls)(**kwargs)
        layer.initialize()
        if shape == 'indices':
            x = mx.nd.array(rng.randint(0, 6, size=(2, 4)).astype('float32'))
        else:
            x = mx.nd.array(rng.uniform(-2, 2, size=shape).astype('float32'))
        layer(x)  # finish deferred init
        params = layer.collect_params()
        for name, p in params.items():
            value = rng.uniform(-1, 1, size=p.shape).astype('float32')
            if short(name) in ('running_var', 'gamma'):
                value = rng.uniform(0.5, 1.5, size=p.shape).astype('float32')
            if short(name) == 'alpha':
                value = rng.uniform(0.1, 0.4, size=p.shape).astype('float32')
            p.set_data(mx.nd.array(value))
            out[f'{case}/param:{short(name)}'] = value
        if shape != 'indices':
            x.attach_grad()
        with autograd.record(train_mode=train):
            y = layer(x)
        head = rng.uniform(-1, 1, size=y.shape).astype('float32')
        y.backward(mx.nd.array(head))
        out[f'{case}/x'] = x.asnumpy()
        out[f'{case}/head'] = head
        out[f'{case}/y'] = y.asnumpy()
        if shape != 'indices':
            out[f'{case}/dx'] = x.grad.asnumpy()
        for name, p in params.items():
            if p.grad_req != 'null':
                out[f'{case}/grad:{short(name)}'] = p.grad().asnumpy()
            out[f'{case}/after:{short(name)}'] = p.data().asnumpy()
        out[f'{case}/spec'] = np.array(json.dumps([cls, kwargs, train]))
    path = os.path.join(os.path.dirname(__file__), '..', 'data', 'basic_layers.npz')
    np.savez_compressed(path, **out)
    print('wrote', path, len(out), 'arrays')


if __name__ == '__main__':
    main()
