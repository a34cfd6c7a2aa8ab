"""Reference numbers for the optimizers, LR schedulers and Trainer, from MXNet 1.9.1 (CPU).

Run with the MXNet venv from the repository root (the tests never import mxnet):
    /work/venvs/mx/bin/python tests/oracle/gen_optimizer.py
Writes tests/data/optimizer.npz:

- ``opt/<case>/spec``: JSON {optimizer, kwargs, scheduler, mults, batch, sparse, steps}.
  ``opt/<case>/w<p>`` initial weights, ``opt/<case>/g<s>_<p>`` gradients of step s (dense),
  ``opt/<case>/rows<s>`` / ``opt/<case>/vals<s>`` the row-sparse gradient of parameter 0 as
  given to xpnet (unsorted, with repeated rows; MXNet gets the same rows summed),
  ``opt/<case>/out<s>_<p>`` weights after step s, ``opt/<case>/state<p>_<k>`` final states,
  ``opt/<case>/lr<s>`` the optimizer's ``learning_rate`` after step s.
  Every update goes through ``mx.optimizer.Updater`` as Gluon's Trainer does (all
  parameters in one call, ``rescale_grad = 1/batch``), except two cases that call MXNet's
  kernels directly: ``nag_wd`` (``nag_mom_update`` with a separate output array: see
  xpnet.optimizer.NAG on MXNet's aliasing) and the ``adamw*`` cases (``contrib.adamw_update``
  with ``lr=lr_t, eta=1, wd=lr*wd``, the definition of xpnet's AdamW).
- ``sched/<case>/spec`` (JSON [class, kwargs]), ``sched/<case>/nup`` (the num_update
  sequence, including jumps and steps back), ``sched/<case>/lr`` (MXNet's answers in order).
- ``trainer/<case>/...``: a 4-5-3 tanh MLP trained by gluon.Trainer on one or two CPU
  contexts (``x``, ``y``, ``p:<name>`` initial parameters, ``after<s>:<name>`` after step s).
- ``clip/...``: ``gluon.utils.clip_global_norm`` on three arrays (``in<k>``) with max_norm 1
  (clips) and 100 (does not): ``norm_<max_norm>``, ``out<k>_<max_norm>``.
"""
import json
import math
import os
import types

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

rng = np.random.RandomState(7)
OUT = {}
STEPS = 4


def put(key, value):
    OUT[key] = np.asarray(value)


# ---------------------------------------------------------------------------------------------
# optimizers
SHAPES = [(6, 4), (4,)]
SPARSE_SHAPES = [(8, 3), (3,)]

CASES = [
    # name, optimizer, kwargs, scheduler, mults [(lr_mult, wd_mult) per param], batch, sparse
    ('sgd', 'sgd', dict(learning_rate=0.1), None, None, 1, False),
    ('sgd_wd_clip', 'sgd', dict(learning_rate=0.1, wd=0.01, clip_gradient=0.5), None,
     [(1.0, 1.0), (2.0, 0.0)], 4, False),
    ('sgd_mom', 'sgd', dict(learning_rate=0.05, momentum=0.9, wd=1e-3), None,
     [(1.0, 1.0), (0.5, 2.0)], 3, False),
    ('sgd_mom_clip_factor', 'sgd', dict(learning_rate=0.1, momentum=0.8, wd=0.01,
                                        clip_gradient=0.3),
     ('FactorScheduler', dict(step=2, factor=0.5, base_lr=0.1)), None, 2, False),
    ('nag', 'nag', dict(learning_rate=0.05, momentum=0.9, clip_gradient=0.6), None,
     [(1.0, 1.0), (3.0, 1.0)], 2, False),
    ('nag_nomom', 'nag', dict(learning_rate=0.05, wd=0.01), None, None, 2, False),
    ('adam', 'adam', dict(learning_rate=0.01), None, None, 1, False),
    ('adam_wd_clip', 'adam', dict(learning_rate=0.02, wd=0.01, clip_gradient=0.4, beta1=0.8,
                                  beta2=0.95, epsilon=1e-6), None, [(1.0, 1.0), (2.0, 0.5)], 4,
     False),
    ('adam_cosine', 'adam', dict(learning_rate=None),
     ('CosineScheduler', dict(max_update=5, base_lr=0.05, final_lr=0.001, warmup_steps=2,
                              warmup_begin_lr=0.01)), None, 2, False),
    ('adam_factor_override', 'adam', dict(),   # Adam's default lr overrides the base_lr
     ('FactorScheduler', dict(step=1, factor=0.9, base_lr=0.05)), None, 2, False),
    ('rmsprop', 'rmsprop', dict(learning_rate=0.01, wd=0.01, clip_gradient=0.5,
                                clip_weights=1.2), None, [(1.0, 1.0), (2.0, 0.0)], 2, False),
    ('rmsprop_centered', 'rmsprop', dict(learning_rate=0.01, centered=True, gamma1=0.95,
                                         gamma2=0.8, wd=0.01),
     ('MultiFactorScheduler', dict(step=[1, 3], factor=0.5, base_lr=0.01)), None, 2, False),
    ('adagrad', 'adagrad', dict(learning_rate=0.1, wd=0.01, clip_gradient=0.7), None,
     [(1.0, 1.0), (0.5, 3.0)], 2, False),
    ('adagrad_poly', 'adagrad', dict(learning_rate=None, eps=1e-6),
     ('PolyScheduler', dict(max_update=6, base_lr=0.2, pwr=2, final_lr=0.01)), None, 1, False),
    ('adadelta', 'adadelta', dict(wd=0.01, rho=0.8, clip_gradient=0.9), None,
     [(1.0, 1.0), (1.0, 2.0)], 2, False),
    # row-sparse gradient for parameter 0 (an embedding), dense for parameter 1
    ('sparse_sgd_mom_lazy', 'sgd', dict(learning_rate=0.1, momentum=0.9, wd=0.01), None, None,
     2, True),
    ('sparse_sgd_lazy', 'sgd', dict(learning_rate=0.1, wd=0.01, clip_gradient=0.5), None, None,
     2, True),
    ('sparse_sgd_mom_std', 'sgd', dict(learning_rate=0.1, momentum=0.9, wd=0.01,
                                       lazy_update=False), None, None, 2, True),
    ('sparse_adam_lazy', 'adam', dict(learning_rate=0.05, wd=0.01, clip_gradient=0.8), None,
     None, 2, True),
    ('sparse_adam_std', 'adam', dict(learning_rate=0.05, wd=0.01, lazy_update=False), None,
     None, 2, True),
    ('sparse_adagrad_lazy', 'adagrad', dict(learning_rate=0.1, clip_gradient=0.8), None, None,
     2, True),
]
KERNEL_CASES = [
    ('nag_wd', 'nag', dict(learning_rate=0.05, momentum=0.9, wd=0.02, clip_gradient=0.6),
     None, [(1.0, 1.0), (2.0, 0.5)], 2, False),
    ('adamw', 'adamw', dict(learning_rate=0.01, wd=0.1), None, [(1.0, 1.0), (2.0, 0.0)], 2,
     False),
    ('adamw_clip', 'adamw', dict(learning_rate=0.02, wd=0.05, clip_gradient=0.3, beta1=0.8,
                                 beta2=0.9, epsilon=1e-6), None, None, 4, False),
]


def make_grads(shapes, sparse):
    """Per step: the dense gradients and, for sparse cases, xpnet's raw (rows, values)."""
    steps = []
    for _ in range(STEPS):
        dense = [rng.randn(*s).astype(np.float32) * 2 for s in shapes]
        raw = None
        if sparse:
            n_rows = shapes[0][0]
            rows = rng.randint(0, n_rows, size=5)          # repeats, unsorted
            vals = rng.randn(5, shapes[0][1]).astype(np.float32) * 2
            g0 = np.zeros(shapes[0], np.float32)
            np.add.at(g0, rows, vals)
            dense[0] = g0
            raw = (rows.astype(np.int64), vals)
        steps.append((dense, raw))
    return steps


def make_scheduler(spec):
    if spec is None:
        return None
    return getattr(mx.lr_scheduler, spec[0])(**spec[1])


def to_rsp(dense):
    rows = np.where(np.abs(dense).sum(axis=1) > 0)[0]
    return mx.nd.sparse.row_sparse_array(
        (mx.nd.array(dense[rows]), mx.nd.array(rows, dtype='int64')), shape=dense.shape)


def run_updater(name, opt_name, kwargs, sched, mults, batch, sparse, grads, weights):
    param_dict = {i: types.SimpleNamespace(lr_mult=m[0], wd_mult=m[1])
                  for i, m in enumerate(mults)} if mults else None
    opt = mx.optimizer.create(opt_name, lr_scheduler=make_scheduler(sched),
                              param_dict=param_dict, **kwargs)
    updater = mx.optimizer.get_updater(opt)
    lazy_adagrad = sparse and opt_name == 'adagrad'
    ws = [mx.nd.array(w) for w in weights]
    if lazy_adagrad:   # MXNet's sparse AdaGrad needs a row_sparse weight
        ws[0] = ws[0].tostype('row_sparse')
    for s, (dense, _) in enumerate(grads):
        opt.rescale_grad = 1.0 / batch
        gs = [to_rsp(dense[0]) if sparse else mx.nd.array(dense[0])] + \
             [mx.nd.array(g) for g in dense[1:]]
        updater(list(range(len(ws))), gs, ws)
        for p, w in enumerate(ws):
            put(f'opt/{name}/out{s}_{p}', w.tostype('default').asnumpy())
        put(f'opt/{name}/lr{s}', opt.learning_rate)
    for p in range(len(ws)):
        state = updater.states[p]
        if state is None:
            continue
        state = state if isinstance(state, (tuple, list)) else (state,)
        for k, st in enumerate(state):
            put(f'opt/{name}/state{p}_{k}', st.tostype('default').asnumpy())


def run_kernel(name, opt_name, kwargs, sched, mults, batch, sparse, grads, weights):
    mults = mults or [(1.0, 1.0)] * len(weights)
    ws = [mx.nd.array(w) for w in weights]
    states = [[mx.nd.zeros(w.shape) for _ in range(1 if opt_name == 'nag' else 2)]
              for w in weights]
    clip = kwargs.get('clip_gradient', -1.0)
    for s, (dense, _) in enumerate(grads):
        t = s + 1
        for p, (w, st) in enumerate(zip(ws, states)):
            g = mx.nd.array(dense[p])
            lr = kwargs['learning_rate'] * mults[p][0]
            wd = kwargs.get('wd', 0.0) * mults[p][1]
            if opt_name == 'nag':
                out = mx.nd.zeros(w.shape)
                mx.nd.nag_mom_update(w, g, st[0], out=out, lr=lr, wd=wd,
                                     momentum=kwargs['momentum'], rescale_grad=1.0 / batch,
                                     clip_gradient=clip)
                w[:] = out
            else:
                b1, b2 = kwargs.get('beta1', 0.9), kwargs.get('beta2', 0.999)
                lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                mx.nd.contrib.adamw_update(w, g, st[0], st[1], mx.nd.array([1.0 / batch]),
                                           out=w, lr=lr_t, eta=1.0, wd=lr * wd, beta1=b1,
                                           beta2=b2, epsilon=kwargs.get('epsilon', 1e-8),
                                           clip_gradient=clip)
            put(f'opt/{name}/out{s}_{p}', w.asnumpy())
        put(f'opt/{name}/lr{s}', kwargs['learning_rate'])
    for p, st in enumerate(states):
        for k, a in enumerate(st):
            put(f'opt/{name}/state{p}_{k}', a.asnumpy())


def gen_optimizers():
    for runner, cases in ((run_updater, CASES), (run_kernel, KERNEL_CASES)):
        for name, opt_name, kwargs, sched, mults, batch, sparse in cases:
            shapes = SPARSE_SHAPES if sparse else SHAPES
            weights = [rng.randn(*s).astype(np.float32) for s in shapes]
            grads = make_grads(shapes, sparse)
            put(f'opt/{name}/spec', json.dumps(dict(
                optimizer=opt_name, kwargs=kwargs, scheduler=sched, mults=mults, batch=batch,
                sparse=sparse, steps=STEPS)))
            for p, w in enumerate(weights):
                put(f'opt/{name}/w{p}', w)
            for s, (dense, raw) in enumerate(grads):
                for p, g in enumerate(dense):
                    put(f'opt/{name}/g{s}_{p}', g)
                if raw is not None:
                    put(f'opt/{name}/rows{s}', raw[0])
                    put(f'opt/{name}/vals{s}', raw[1])
            runner(name, opt_name, kwargs, sched, mults, batch, sparse, grads, weights)


# ---------------------------------------------------------------------------------------------
# schedulers
SCHED_CASES = [
    ('factor', 'FactorScheduler', dict(step=5, factor=0.5, stop_factor_lr=1e-3, base_lr=0.1,
                                       warmup_steps=3, warmup_begin_lr=0.01)),
    ('factor_constant_warmup', 'FactorScheduler',
     dict(step=3, factor=0.7, base_lr=0.2, warmup_steps=4, warmup_begin_lr=0.05,
          warmup_mode='constant')),
    ('multifactor', 'MultiFactorScheduler', dict(step=[5, 12, 20], factor=0.3, base_lr=0.2,
                                                 warmup_steps=4)),
    ('poly', 'PolyScheduler', dict(max_update=30, base_lr=0.1, pwr=2, final_lr=0.01,
                                   warmup_steps=5)),
    ('poly_linear', 'PolyScheduler', dict(max_update=25, base_lr=0.3, pwr=1)),
    ('cosine', 'CosineScheduler', dict(max_update=30, base_lr=0.1, final_lr=0.001,
                                       warmup_steps=5, warmup_begin_lr=0.02,
                                       warmup_mode='constant')),
    ('cosine_plain', 'CosineScheduler', dict(max_update=20, base_lr=0.05)),
]
NUP = list(range(0, 41)) + [35, 20, 3, 50, 10, 100, 7]
NUP_JUMP = [37, 38, 2, 60, 61]


def gen_schedulers():
    for name, cls, kwargs in SCHED_CASES:
        for suffix, seq in (('', NUP), ('_jump', NUP_JUMP)):
            sched = getattr(mx.lr_scheduler, cls)(**kwargs)
            lrs = [sched(n) for n in seq]
            put(f'sched/{name}{suffix}/spec', json.dumps([cls, kwargs]))
            put(f'sched/{name}{suffix}/nup', np.array(seq, np.int64))
            put(f'sched/{name}{suffix}/lr', np.array(lrs, np.float64))


# ---------------------------------------------------------------------------------------------
# Trainer on an MLP, one and two contexts
TRAINER_CASES = [
    ('sgd_1ctx', 'sgd', dict(learning_rate=0.1, momentum=0.9, wd=1e-3), 1),
    ('sgd_2ctx', 'sgd', dict(learning_rate=0.1, momentum=0.9, wd=1e-3), 2),
    ('adam_2ctx', 'adam', dict(learning_rate=0.01, wd=1e-3, clip_gradient=0.05), 2),
]


def gen_trainer():
    x = rng.randn(8, 4).astype(np.float32)
    y = rng.randint(0, 3, size=8).astype(np.float32)
    params0 = {'0.weight': rng.randn(5, 4).astype(np.float32) * 0.5,
               '0.bias': rng.randn(5).astype(np.float32) * 0.1,
               '1.weight': rng.randn(3, 5).astype(np.float32) * 0.5,
               '1.bias': rng.randn(3).astype(np.float32) * 0.1}
    for name, opt_name, kwargs, n_ctx in TRAINER_CASES:
        ctxs = [mx.cpu(i) for i in range(n_ctx)]
        net = gluon.nn.Sequential()
        net.add(gluon.nn.Dense(5, activation='tanh', in_units=4), gluon.nn.Dense(3, in_units=5))
        net.initialize(ctx=ctxs)
        mx_params = list(net.collect_params().values())
        for p, key in zip(mx_params, ['0.weight', '0.bias', '1.weight', '1.bias']):
            p.set_data(mx.nd.array(params0[key]))
        trainer = gluon.Trainer(net.collect_params(), opt_name, dict(kwargs))
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        put(f'trainer/{name}/spec', json.dumps([opt_name, kwargs, n_ctx]))
        for s in range(3):
            xs = gluon.utils.split_and_load(mx.nd.array(x), ctxs)
            ys = gluon.utils.split_and_load(mx.nd.array(y), ctxs)
            with autograd.record():
                losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
            for loss in losses:
                loss.backward()
            trainer.step(x.shape[0])
            for p, key in zip(mx_params, ['0.weight', '0.bias', '1.weight', '1.bias']):
                reps = [d.asnumpy() for d in p.list_data()]
                assert all(np.array_equal(reps[0], r) for r in reps)
                put(f'trainer/{name}/after{s}:{key}', reps[0])
    put('trainer/x', x)
    put('trainer/y', y)
    for key, v in params0.items():
        put(f'trainer/p:{key}', v)


# ---------------------------------------------------------------------------------------------
# gluon.utils.clip_global_norm
def gen_clip():
    arrays = [rng.randn(3, 4).astype(np.float32), rng.randn(5).astype(np.float32) * 3,
              rng.randn(2, 2, 2).astype(np.float32)]
    for k, a in enumerate(arrays):
        put(f'clip/in{k}', a)
    for max_norm in (1.0, 100.0):
        nds = [mx.nd.array(a) for a in arrays]
        norm = gluon.utils.clip_global_norm(nds, max_norm)
        put(f'clip/norm_{max_norm:g}', norm)
        for k, a in enumerate(nds):
            put(f'clip/out{k}_{max_norm:g}', a.asnumpy())


if __name__ == '__main__':
    gen_optimizers()
    gen_schedulers()
    gen_trainer()
    gen_clip()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                        'optimizer.npz')
    np.savez_compressed(path, **OUT)
    print(f'wrote {len(OUT)} arrays to {os.path.normpath(path)}')
