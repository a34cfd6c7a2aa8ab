"""Reference values and gradients of Gluon 1.9.1's CTCLoss and SDMLLoss.

    /work/venvs/mx/bin/python tests/oracle/gen_loss_gluon.py

Each case stores its constructor kwargs (``<case>/spec`` JSON), inputs ``<case>/in<i>``
(None inputs are skipped and marked in the spec), the per-sample loss ``<case>/out`` and
the gradient of ``loss.sum()`` with respect to input 0 (and 1 for SDML): ``<case>/grad<i>``.
``extra/...`` holds values checked to one rounding step: ``gluon.nn.SELU`` on a grid
(``selu_x``, ``selu_out``) and the NegativeLogLikelihood / CrossEntropy metrics on a batch
(``nll_pred``, ``nll_label``, ``nll``, ``ce``). Writes tests/data/loss_gluon.npz.
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

R = np.random.RandomState(5)
OUT = {}


def put(key, value):
    OUT[key] = np.asarray(value)


def case(name, cls, kwargs, inputs, grads):
    arrays = [None if a is None else mx.nd.array(a, dtype=a.dtype) for a in inputs]
    for i in grads:
        arrays[i].attach_grad()
    loss_fn = getattr(gluon.loss, cls)(**kwargs)
    with autograd.record():
        out = loss_fn(*arrays)
    out.backward()
    put(f'{name}/spec', json.dumps(dict(cls=cls, kwargs=kwargs, grads=grads,
                                        inputs=[a is not None for a in inputs])))
    for i, a in enumerate(inputs):
        if a is not None:
            put(f'{name}/in{i}', a)
    put(f'{name}/out', out.asnumpy())
    for i in grads:
        put(f'{name}/grad{i}', arrays[i].grad.asnumpy())


def f32(*shape):
    return R.randn(*shape).astype(np.float32)


# CTC: 4 symbols + blank (the last class), labels padded with -1
labels = np.array([[1, 0, -1, -1], [2, 1, 1, -1], [0, 1, 0, 2]], np.float32)
case('ctc_ntc', 'CTCLoss', {}, [f32(3, 12, 5), labels], [0])
case('ctc_tnc_tn', 'CTCLoss', {'layout': 'TNC', 'label_layout': 'TN'},
     [f32(10, 3, 5), labels.T.copy()], [0])
case('ctc_lengths', 'CTCLoss', {},
     [f32(3, 9, 6), np.array([[3, 3, 1, 0], [4, 4, 4, 2], [0, 1, 2, 3]], np.float32),
      np.array([9, 6, 8], np.float32), np.array([2, 4, 3], np.float32)], [0])
case('ctc_pred_lengths_weight', 'CTCLoss', {'weight': 0.5},
     [f32(2, 7, 4), np.array([[0, 0, -1], [2, -1, -1]], np.float32),
      np.array([5, 7], np.float32)], [0])
case('ctc_repeats', 'CTCLoss', {},
     [f32(2, 8, 3), np.array([[1, 1, 1], [0, 1, 0]], np.float32)], [0])
# SDML
case('sdml', 'SDMLLoss', {}, [f32(5, 4), f32(5, 4)], [0, 1])
case('sdml_smooth', 'SDMLLoss', {'smoothing_parameter': 0.1}, [f32(3, 6), f32(3, 6)], [0, 1])

# SELU and the NLL metric
selu_x = np.linspace(-6, 4, 41).astype(np.float32)
put('extra/selu_x', selu_x)
put('extra/selu_out', gluon.nn.SELU()(mx.nd.array(selu_x)).asnumpy())
nll_pred = R.dirichlet(np.ones(5), size=8).astype(np.float32)
nll_label = R.randint(0, 5, size=8).astype(np.float32)
put('extra/nll_pred', nll_pred)
put('extra/nll_label', nll_label)
for key, metric in (('nll', mx.metric.NegativeLogLikelihood()), ('ce', mx.metric.CrossEntropy())):
    metric.update([mx.nd.array(nll_label)], [mx.nd.array(nll_pred)])
    put(f'extra/{key}', metric.get()[1])

if __name__ == '__main__':
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                        'loss_gluon.npz')
    np.savez_compressed(path, **OUT)
    print(f'wrote {len(OUT)} arrays to {os.path.normpath(path)}', os.path.getsize(path))
