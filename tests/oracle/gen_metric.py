"""Reference values for ``tests/test_metric.py`` computed with MXNet 1.9.1 (``mx.metric``).

Run with the MXNet venv from the repository root::

    /work/venvs/mx/bin/python tests/oracle/gen_metric.py

Every case feeds three updates to a metric (some with a list of two arrays, as from two
devices), calling ``reset_local()`` after the second when ``reset_local`` is set, and
records ``get()`` and ``get_global()`` after each step: 4 points (update 0, update 1,
after reset_local, update 2) or 3 without the reset. ``tests/data/metric.npz`` holds
``<case>__u<k>_label<d>`` / ``<case>__u<k>_pred<d>``, ``<case>__local``, ``<case>__global``
(shape (points,) or (points, metrics) for composites), the names ``<case>__names``, and
``cases``: a JSON list of ``{name, metric, kwargs, devices, reset_local}``.
"""
import json
import os

import mxnet as mx
import numpy as np

R = np.random.RandomState(7)
F32 = np.float32


def probs(n, c):
    x = R.randn(n, c).astype(np.float64) * 2
    e = np.exp(x - x.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(F32)


def ints(c, *shape):
    return R.randint(0, c, size=shape).astype(F32)


def classify(n, c):
    return lambda: (ints(c, n), probs(n, c))


def binary(n):
    return lambda: (ints(2, n), probs(n, 2))


def regress(*shape):
    def make():
        lab = R.randn(*shape).astype(F32)
        return lab, (lab + 0.5 * R.randn(*shape)).astype(F32)
    return make


CASES = []


def case(name, metric, kwargs, make, devices=(1, 2, 1), reset_local=True):
    CASES.append(dict(name=name, metric=metric, kwargs=kwargs, make=make,
                      devices=list(devices), reset_local=reset_local))


case('accuracy', 'Accuracy', {}, classify(8, 4))
case('accuracy_labels', 'Accuracy', {}, lambda: (ints(3, 8), ints(3, 8)))
case('accuracy_label_col', 'Accuracy', {}, lambda: (ints(4, 8, 1), probs(8, 4)))


def seq_scores():
    lab = ints(4, 5, 3)
    return lab, R.rand(5, 4, 3).astype(F32)


case('accuracy_axis1', 'Accuracy', {'axis': 1}, seq_scores)
case('accuracy_axis_last', 'Accuracy', {'axis': -1}, lambda: (ints(4, 5, 3),
                                                              R.rand(5, 3, 4).astype(F32)))
case('top_k_2', 'TopKAccuracy', {'top_k': 2}, classify(8, 5))
case('top_k_3', 'TopKAccuracy', {'top_k': 3}, classify(8, 5))
case('f1', 'F1', {}, binary(10))
case('f1_micro', 'F1', {'average': 'micro'}, binary(10))
case('mcc', 'MCC', {}, binary(10))
case('mcc_micro', 'MCC', {'average': 'micro'}, binary(10))
case('mae', 'MAE', {}, regress(8))
case('mae_2d', 'MAE', {}, regress(8, 3))
case('mse', 'MSE', {}, regress(8, 3))
case('rmse', 'RMSE', {}, regress(8))
case('cross_entropy', 'CrossEntropy', {}, classify(8, 4))
case('cross_entropy_eps', 'CrossEntropy', {'eps': 1e-3}, classify(8, 4))
case('nll_loss', 'NegativeLogLikelihood', {}, classify(8, 4))
case('perplexity', 'Perplexity', {'ignore_label': None}, classify(9, 5))
case('perplexity_ignore', 'Perplexity', {'ignore_label': 2}, classify(9, 5))
case('pearsonr', 'PearsonCorrelation', {}, regress(12))
case('pearsonr_micro', 'PearsonCorrelation', {'average': 'micro'}, regress(12),
     reset_local=False)
case('pcc', 'PCC', {}, classify(12, 3))
case('loss', 'Loss', {}, lambda: (ints(2, 6), R.rand(6).astype(F32) * 3))
case('composite', 'composite', {}, classify(8, 4))


def make_metric(c):
    if c['metric'] == 'composite':
        m = mx.metric.CompositeEvalMetric()
        m.add(mx.metric.Accuracy())
        m.add(mx.metric.CrossEntropy())
        m.add(mx.metric.TopKAccuracy(top_k=2))
        return m
    return getattr(mx.metric, c['metric'])(**c['kwargs'])


def as_list(v):
    return list(v) if isinstance(v, list) else [v]


def main():
    data, meta = {}, []
    for c in CASES:
        m = make_metric(c)
        name = c['name']
        local, glob = [], []

        def record():
            local.append(as_list(m.get()[1]))
            glob.append(as_list(m.get_global()[1]))
        for k, ndev in enumerate(c['devices']):
            labels, preds = [], []
            for d in range(ndev):
                lab, pred = c['make']()
                data[f'{name}__u{k}_label{d}'] = lab
                data[f'{name}__u{k}_pred{d}'] = pred
                labels.append(mx.nd.array(lab))
                preds.append(mx.nd.array(pred))
            m.update(labels, preds)
            record()
            if k == 1 and c['reset_local']:
                m.reset_local()
                record()
        data[f'{name}__local'] = np.array(local, dtype=np.float64).squeeze(-1) \
            if len(local[0]) == 1 else np.array(local, dtype=np.float64)
        data[f'{name}__global'] = np.array(glob, dtype=np.float64).squeeze(-1) \
            if len(glob[0]) == 1 else np.array(glob, dtype=np.float64)
        data[f'{name}__names'] = np.array(as_list(m.get()[0]))
        meta.append({k: c[k] for k in ('name', 'metric', 'kwargs', 'devices', 'reset_local')})
    data['cases'] = np.array(json.dumps(meta))
    out = os.path.join(os.path.dirname(__file__), '..', 'data', 'metric.npz')
    np.savez_compressed(out, **data)
    print(f'wrote {len(meta)} cases to {os.path.normpath(out)}')


if __name__ == '__main__':
    main()
