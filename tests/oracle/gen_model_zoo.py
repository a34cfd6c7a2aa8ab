"""Model-zoo reference: structure of every Gluon 1.9.1 vision model, outputs of a few.

    /work/venvs/mx/bin/python tests/oracle/gen_model_zoo.py

For every model of ``gluon.model_zoo.vision`` it records, before any forward pass, each
parameter's structural name (what ``save_parameters`` writes), its legacy ``save_params``
name (the prefixed name without the model's prefix) and its shape (0 where deferred). For
the models of ``tests/zoo_params.FORWARD`` it fills every parameter with
``zoo_params.param_value`` and stores the inference-mode output on ``model_input`` and the
parameter shapes after the forward pass.
Writes tests/data/model_zoo.npz.
"""
import json
import os
import sys

import mxnet as mx
import numpy as np
from mxnet.gluon.model_zoo import vision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from zoo_params import FORWARD, model_input, param_value  # noqa: E402

NAMES = ['resnet18_v1', 'resnet34_v1', 'resnet50_v1', 'resnet101_v1', 'resnet152_v1',
         'resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2', 'resnet152_v2',
         'vgg11', 'vgg13', 'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn',
         'alexnet', 'densenet121', 'densenet161', 'densenet169', 'densenet201',
         'squeezenet1.0', 'squeezenet1.1', 'inceptionv3', 'mobilenet1.0', 'mobilenet0.75',
         'mobilenet0.5', 'mobilenet0.25', 'mobilenetv2_1.0', 'mobilenetv2_0.75',
         'mobilenetv2_0.5', 'mobilenetv2_0.25']


def structure(net):
    rows = []
    for name, p in net._collect_params_with_prefix().items():
        rows.append([name, p.name[len(net.prefix):], list(p.shape)])
    return rows


def forward(name, net):
    net.initialize()
    x = mx.nd.array(model_input(name))
    net(x)                                   # resolve deferred shapes
    shapes = {}
    for pname, p in net._collect_params_with_prefix().items():
        p.set_data(mx.nd.array(param_value(pname, p.shape)))
        shapes[pname] = list(p.shape)
    return net(x).asnumpy(), shapes


out, structures, shapes = {}, {}, {}
for name in NAMES:
    net = vision.get_model(name)
    structures[name] = structure(net)
    if name in FORWARD:
        out['out:' + name], shapes[name] = forward(name, net)
        print(name, out['out:' + name].std())
out['structure'] = np.array(json.dumps(structures))
out['shapes'] = np.array(json.dumps(shapes))
path = os.path.join(os.path.dirname(__file__), '..', 'data', 'model_zoo.npz')
np.savez_compressed(path, **out)
print('wrote', path, os.path.getsize(path))
