"""Reference numbers for ``tests/test_loss.py`` computed with MXNet 1.9.1 (Gluon losses).

Run with the MXNet venv from the repository root::

    /work/venvs/mx/bin/python tests/oracle/gen_loss.py

Writes ``tests/data/loss.npz``: for every case ``<case>__in<i>`` (positional inputs),
``<case>__kw_<name>`` (array keyword arguments), ``<case>__out`` (the loss) and
``<case>__grad<i>`` (gradients of ``sum(loss)`` with respect to the float inputs), plus
``cases``: a JSON list of ``{name, cls, kwargs, n_in, grads, kw, reduce}``.
``reduce == 'mean'`` marks PoissonNLLLoss, which MXNet reduces to one mean.
"""
import json
import os

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import loss as gloss

R = np.random.RandomState(42)
F32 = np.float32


def randn(*shape):
    return R.randn(*shape).astype(F32)


def uniform(lo, hi, *shape):
    return R.uniform(lo, hi, size=shape).astype(F32)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(F32)


def log_softmax(x, axis=-1):
    return np.log(softmax(x, axis)).astype(F32)


def signs(*shape):
    return np.where(R.rand(*shape) > 0.5, 1, -1).astype(F32)


def classes(c, *shape):
    return R.randint(0, c, size=shape).astype(F32)


def away(x, points, gap=0.05):
    """Move entries of ``x`` off the kinks in ``points`` (finite differences / ties)."""
    x = x.copy()
    for p in points:
        close = np.abs(x - p) < gap
        x[close] = p + 2 * gap
    return x


CASES = []


def case(name, cls, kwargs, inputs, grads, kw=None, reduce=None):
    CASES.append(dict(name=name, cls=cls, kwargs=kwargs, inputs=inputs, grads=grads,
                      kw=kw or {}, reduce=reduce))


# L2 / L1 ------------------------------------------------------------------------------------
case('l2', 'L2Loss', {}, [randn(4, 3), randn(4, 3)], [0, 1])
case('l2_weight_sw', 'L2Loss', {'weight': 0.7}, [randn(4, 3), randn(4, 3)], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1)})
case('l2_label_reshape', 'L2Loss', {}, [randn(5, 1), randn(5)], [0, 1])
case('l2_batch_axis1', 'L2Loss', {'batch_axis': 1}, [randn(3, 4, 2), randn(3, 4, 2)], [0, 1])
case('l2_1d', 'L2Loss', {}, [randn(6), randn(6)], [0, 1])
d = randn(4, 3, 2)
case('l1', 'L1Loss', {}, [d, away(d + randn(4, 3, 2), [])], [0, 1])
p, lab = randn(4, 3, 2), randn(4, 3, 2)
case('l1_weight_sw', 'L1Loss', {'weight': 2.0}, [p, lab], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1, 2)})

# Softmax cross-entropy -------------------------------------------------------------------
case('sce', 'SoftmaxCrossEntropyLoss', {}, [randn(5, 4), classes(4, 5)], [0])
case('sce_label_col', 'SoftmaxCrossEntropyLoss', {}, [randn(5, 4), classes(4, 5, 1)], [0])
case('sce_axis1', 'SoftmaxCrossEntropyLoss', {'axis': 1}, [randn(3, 4, 5), classes(4, 3, 5)],
     [0])
case('sce_3d', 'SoftmaxCrossEntropyLoss', {}, [randn(2, 3, 4), classes(4, 2, 3)], [0])
case('sce_dense', 'SoftmaxCrossEntropyLoss', {'sparse_label': False},
     [randn(5, 4), softmax(randn(5, 4))], [0, 1])
case('sce_logits', 'SoftmaxCrossEntropyLoss', {'from_logits': True},
     [log_softmax(randn(5, 4)), classes(4, 5)], [0])
case('sce_dense_logits', 'SoftmaxCrossEntropyLoss', {'sparse_label': False,
                                                     'from_logits': True},
     [log_softmax(randn(5, 4)), softmax(randn(5, 4))], [0, 1])
case('sce_weight_sw', 'SoftmaxCrossEntropyLoss', {'weight': 0.5},
     [randn(5, 4), classes(4, 5)], [0], kw={'sample_weight': uniform(0.5, 2, 5, 1)})
case('sce_batch_axis1', 'SoftmaxCrossEntropyLoss', {'batch_axis': 1},
     [randn(3, 4, 5), classes(5, 3, 4)], [0])
case('sce_batch_axis1_sw', 'SoftmaxCrossEntropyLoss', {'batch_axis': 1, 'weight': 1.5},
     [randn(3, 4, 5), classes(5, 3, 4)], [0], kw={'sample_weight': uniform(0.5, 2, 3, 4, 1)})

# Sigmoid BCE --------------------------------------------------------------------------------
z = (R.rand(4, 3) > 0.5).astype(F32)
case('bce', 'SigmoidBinaryCrossEntropyLoss', {}, [randn(4, 3) * 3, z], [0, 1])
case('bce_soft_label', 'SigmoidBinaryCrossEntropyLoss', {}, [randn(4, 3) * 3,
                                                            uniform(0, 1, 4, 3)], [0, 1])
case('bce_sigmoid', 'SigmoidBinaryCrossEntropyLoss', {'from_sigmoid': True},
     [uniform(0.05, 0.95, 4, 3), uniform(0, 1, 4, 3)], [0, 1])
case('bce_pos_weight', 'SigmoidBinaryCrossEntropyLoss', {},
     [randn(4, 3) * 3, uniform(0, 1, 4, 3)], [0, 1], kw={'pos_weight': uniform(0.5, 3, 1, 3)})
case('bce_sigmoid_pos_weight', 'SigmoidBinaryCrossEntropyLoss', {'from_sigmoid': True},
     [uniform(0.05, 0.95, 4, 3), uniform(0, 1, 4, 3)], [0, 1],
     kw={'pos_weight': uniform(0.5, 3, 1, 3)})
case('bce_weight_sw', 'SigmoidBinaryCrossEntropyLoss', {'weight': 0.3, 'batch_axis': 0},
     [randn(4, 3, 2), (R.rand(4, 3, 2) > 0.5).astype(F32)], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1, 1)})

# KL divergence ------------------------------------------------------------------------------
case('kl', 'KLDivLoss', {}, [log_softmax(randn(4, 5)), softmax(randn(4, 5))], [0, 1])
case('kl_from_scores', 'KLDivLoss', {'from_logits': False},
     [randn(4, 5), softmax(randn(4, 5))], [0, 1])
case('kl_axis1', 'KLDivLoss', {'from_logits': False, 'axis': 1},
     [randn(3, 4, 2), softmax(randn(3, 4, 2), axis=1)], [0, 1])
case('kl_weight_sw', 'KLDivLoss', {'weight': 2.0},
     [log_softmax(randn(4, 5)), softmax(randn(4, 5))], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1)})

# Huber / hinge / logistic --------------------------------------------------------------------
p = randn(4, 5) * 2
lab = p + away(randn(4, 5) * 1.5, [-1, 0, 1])
case('huber', 'HuberLoss', {}, [p, lab], [0, 1])
lab = p + away(randn(4, 5), [-0.5, 0, 0.5])
case('huber_rho', 'HuberLoss', {'rho': 0.5, 'weight': 1.5}, [p, lab], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1)})
y = signs(4, 5)
p = away(randn(4, 5) * 2, [-1, 1])
case('hinge', 'HingeLoss', {}, [p, y], [0, 1])
p = away(randn(4, 5) * 2, [-2, 2])
case('hinge_margin', 'HingeLoss', {'margin': 2, 'weight': 0.5}, [p, y], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1)})
p = away(randn(4, 5) * 2, [-1, 1])
case('sq_hinge', 'SquaredHingeLoss', {}, [p, y], [0, 1])
p = away(randn(4, 5) * 2, [-1.5, 1.5])
case('sq_hinge_margin', 'SquaredHingeLoss', {'margin': 1.5, 'batch_axis': 1},
     [p, y], [0, 1])
case('logistic', 'LogisticLoss', {}, [randn(4, 5) * 2, signs(4, 5)], [0, 1])
case('logistic_binary', 'LogisticLoss', {'label_format': 'binary', 'weight': 0.5},
     [randn(4, 5) * 2, (R.rand(4, 5) > 0.5).astype(F32)], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 4, 1)})

# Triplet / cosine ----------------------------------------------------------------------------
case('triplet', 'TripletLoss', {}, [randn(4, 3), randn(4, 3), randn(4, 3)], [0, 1, 2])
case('triplet_margin', 'TripletLoss', {'margin': 3, 'weight': 0.5},
     [randn(4, 3, 2), randn(4, 3, 2), randn(4, 3, 2)], [0, 1, 2])
case('triplet_batch_axis1', 'TripletLoss', {'margin': 2, 'batch_axis': 1},
     [randn(3, 4), randn(3, 4), randn(3, 4)], [0, 1, 2])
case('cosine', 'CosineEmbeddingLoss', {}, [randn(6, 4), randn(6, 4), signs(6)], [0, 1])
case('cosine_margin', 'CosineEmbeddingLoss', {'margin': 0.1, 'weight': 2.0},
     [randn(6, 4), randn(6, 4), signs(6)], [0, 1],
     kw={'sample_weight': uniform(0.5, 2, 6, 1)})

# Poisson NLL (MXNet returns the mean over everything; with compute_full it updates an array
# in place, which MXNet's autograd refuses, so that case has no reference gradient) -----------
case('poisson', 'PoissonNLLLoss', {}, [randn(4, 3), R.randint(0, 6, (4, 3)).astype(F32)],
     [0, 1], reduce='mean')
case('poisson_probs', 'PoissonNLLLoss', {'from_logits': False},
     [uniform(0.2, 4, 4, 3), R.randint(0, 6, (4, 3)).astype(F32)], [0, 1], reduce='mean')
case('poisson_full', 'PoissonNLLLoss', {'compute_full': True, 'weight': 0.5},
     [randn(4, 3), R.randint(1, 8, (4, 3)).astype(F32)], [], reduce='mean',
     kw={'sample_weight': uniform(0.5, 2, 4, 1)})


def run(c):
    cls = getattr(gloss, c['cls'])
    loss_fn = cls(**c['kwargs'])
    xs = [mx.nd.array(a, dtype=a.dtype) for a in c['inputs']]
    for i in c['grads']:
        xs[i].attach_grad()
    # MXNet's Block.__call__ takes no keyword arguments: pass them by position.
    extra = [c['kw'].get('sample_weight'), c['kw'].get('pos_weight')]
    while extra and extra[-1] is None:
        extra.pop()
    extra = [None if v is None else mx.nd.array(v) for v in extra]
    if not c['grads']:
        return loss_fn(*xs, *extra).asnumpy(), {}
    with autograd.record():
        out = loss_fn(*xs, *extra)
    out.backward()
    grads = {i: xs[i].grad.asnumpy() for i in c['grads']}
    return out.asnumpy(), grads


def main():
    data, meta = {}, []
    for c in CASES:
        out, grads = run(c)
        assert np.all(np.isfinite(out)), c['name']
        name = c['name']
        for i, a in enumerate(c['inputs']):
            data[f'{name}__in{i}'] = a
        for k, v in c['kw'].items():
            data[f'{name}__kw_{k}'] = v
        data[f'{name}__out'] = out
        for i, g in grads.items():
            data[f'{name}__grad{i}'] = g
        meta.append(dict(name=name, cls=c['cls'], kwargs=c['kwargs'], n_in=len(c['inputs']),
                         grads=c['grads'], kw=sorted(c['kw']), reduce=c['reduce']))
    data['cases'] = np.array(json.dumps(meta))
    out = os.path.join(os.path.dirname(__file__), '..', 'data', 'loss.npz')
    np.savez_compressed(out, **data)
    print(f'wrote {len(meta)} cases to {os.path.normpath(out)}')


if __name__ == '__main__':
    main()
