"""An MXNet-format parameter file for the loader test.

    /work/venvs/mx/bin/python tests/oracle/gen_mxnet_params.py
Writes tests/data/mxnet_mlp.params (MXNet binary format, Gluon 1.x save_parameters of a
small net) and tests/data/mxnet_mlp_ref.npz (the input and MXNet's output for it).
"""
import os

import mxnet as mx
import numpy as np
from mxnet import gluon

here = os.path.join(os.path.dirname(__file__), '..', 'data')
net = gluon.nn.HybridSequential()
net.add(gluon.nn.Dense(5, activation='relu', in_units=4), gluon.nn.BatchNorm(in_channels=5),
        gluon.nn.Dense(3, in_units=5))
net.initialize(mx.init.Xavier())
x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 4)))
with mx.autograd.record():
    net(x)                         # move the BatchNorm running statistics off their defaults
net.save_parameters(os.path.join(here, 'mxnet_mlp.params'))
np.savez(os.path.join(here, 'mxnet_mlp_ref.npz'), x=x.asnumpy(), y=net(x).asnumpy())
print('ok')
