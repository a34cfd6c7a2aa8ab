"""Reference updates of MXNet 1.9.1's other optimizers (the Gluon 1.x registry).

    /work/venvs/mx/bin/python tests/oracle/gen_optimizer_gluon.py

Same layout as ``gen_optimizer.py``'s ``opt/<case>/...`` entries (spec, w<p>, g<s>_<p>,
out<s>_<p>, state<p>_<k>, lr<s>): every update goes through ``mx.optimizer.Updater`` as
Gluon's Trainer does (all parameters in one call, ``rescale_grad = 1/batch``), with weight
decay, gradient clipping, lr/wd multipliers and a scheduler among the cases. ``sgd_mp`` and
``nag_mp``/``lamb_mp`` use float16 weights with ``multi_precision=True``: their states
record MXNet's order. Writes tests/data/optimizer_gluon.npz.
"""
import json
import os
import types

import mxnet as mx
import numpy as np

rng = np.random.RandomState(11)
OUT = {}
STEPS = 4
SHAPES = [(6, 4), (4,), (3, 2, 2)]

CASES = [
    # name, optimizer, kwargs, scheduler, mults [(lr_mult, wd_mult) per param], batch, dtype
    ('signum', 'signum', dict(learning_rate=0.01, momentum=0.9, wd=0.01, clip_gradient=0.5),
     None, [(1.0, 1.0), (2.0, 0.5), (1.0, 0.0)], 2, 'float32'),
    ('signum_wd_lh', 'signum', dict(learning_rate=0.02, momentum=0.8, wd_lh=0.1), None, None,
     1, 'float32'),
    ('signsgd', 'signum', dict(learning_rate=0.01, momentum=0.0, wd=0.05), None, None, 2,
     'float32'),
    ('ftml', 'ftml', dict(learning_rate=0.02, wd=0.01, clip_gradient=0.8), None,
     [(1.0, 1.0), (0.5, 2.0), (1.0, 1.0)], 2, 'float32'),
    ('ftml_sched', 'ftml', dict(learning_rate=None, beta1=0.5),
     ('FactorScheduler', dict(step=2, factor=0.5, base_lr=0.05)), None, 1, 'float32'),
    ('lars', 'lars', dict(learning_rate=0.1, momentum=0.9, wd=0.01, eta=0.01), None,
     [(1.0, 1.0), (2.0, 0.5), (1.0, 1.0)], 2, 'float32'),
    ('lars_sched_clip', 'lars', dict(learning_rate=None, momentum=0.8, clip_gradient=0.3,
                                     eps=1e-4),
     ('FactorScheduler', dict(step=1, factor=0.7, base_lr=0.2)), None, 2, 'float32'),
    ('lbsgd', 'lbsgd', dict(learning_rate=0.1, momentum=0.9, wd=0.01, warmup_epochs=1,
                            updates_per_epoch=4), None, None, 2, 'float32'),
    ('lbsgd_scale2', 'lbsgd', dict(learning_rate=0.1, batch_scale=2, warmup_epochs=1,
                                   updates_per_epoch=8, clip_gradient=0.5), None, None, 1,
     'float32'),
    ('lamb', 'lamb', dict(learning_rate=0.01, wd=0.01), None,
     [(1.0, 1.0), (2.0, 0.0), (1.0, 1.0)], 2, 'float32'),
    ('lamb_bounds_clip', 'lamb', dict(learning_rate=0.02, lower_bound=0.5, upper_bound=2.0,
                                      clip_gradient=0.4, bias_correction=False, beta1=0.8),
     None, None, 4, 'float32'),
    ('dcasgd', 'dcasgd', dict(learning_rate=0.05, wd=0.01, lamda=0.1, clip_gradient=0.7),
     None, [(1.0, 1.0), (2.0, 1.0), (1.0, 0.5)], 2, 'float32'),
    ('ccsgd', 'ccsgd', dict(learning_rate=0.05, momentum=0.9, wd=0.01), None, None, 2,
     'float32'),
    ('ftrl', 'ftrl', dict(learning_rate=0.1, lamda1=0.01, beta=1, wd=0.01), None,
     [(1.0, 1.0), (0.5, 2.0), (1.0, 1.0)], 2, 'float32'),
    ('ftrl_clip', 'ftrl', dict(lamda1=0.5, clip_gradient=0.3), None, None, 1, 'float32'),
    ('adamax', 'adamax', dict(learning_rate=0.01, wd=0.01, clip_gradient=0.6), None,
     [(1.0, 1.0), (2.0, 0.0), (1.0, 1.0)], 2, 'float32'),
    ('nadam', 'nadam', dict(learning_rate=0.01, wd=0.01, clip_gradient=0.6), None,
     [(1.0, 1.0), (2.0, 0.5), (1.0, 1.0)], 2, 'float32'),
    ('nadam_sched', 'nadam', dict(learning_rate=None, schedule_decay=0.01),
     ('MultiFactorScheduler', dict(step=[2], factor=0.5, base_lr=0.02)), None, 1, 'float32'),
    ('sgd_mp', 'sgd', dict(learning_rate=0.1, momentum=0.9, wd=0.01, multi_precision=True),
     None, None, 2, 'float16'),
    ('sgd_mp_nomom', 'sgd', dict(learning_rate=0.1, multi_precision=True), None, None, 2,
     'float16'),
    ('nag_mp', 'nag', dict(learning_rate=0.1, momentum=0.9, multi_precision=True), None, None,
     2, 'float16'),
    ('adam_mp', 'adam', dict(learning_rate=0.01, multi_precision=True), None, None, 2,
     'float16'),
]


def put(key, value):
    OUT[key] = np.asarray(value)


def make_scheduler(spec):
    return None if spec is None else getattr(mx.lr_scheduler, spec[0])(**spec[1])


def run(name, opt_name, kwargs, sched, mults, batch, dtype):
    weights = [rng.randn(*s).astype(dtype) for s in SHAPES]
    grads = [[(rng.randn(*s) * 2).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    put(f'opt/{name}/spec', json.dumps(dict(optimizer=opt_name, kwargs=kwargs, scheduler=sched,
                                            mults=mults, batch=batch, dtype=dtype,
                                            steps=STEPS)))
    for p, w in enumerate(weights):
        put(f'opt/{name}/w{p}', w)
    for s, gs in enumerate(grads):
        for p, g in enumerate(gs):
            put(f'opt/{name}/g{s}_{p}', g)
    param_dict = {i: types.SimpleNamespace(lr_mult=m[0], wd_mult=m[1])
                  for i, m in enumerate(mults)} if mults else None
    opt = mx.optimizer.create(opt_name, lr_scheduler=make_scheduler(sched),
                              param_dict=param_dict, **kwargs)
    updater = mx.optimizer.get_updater(opt)
    ws = [mx.nd.array(w, dtype=dtype) for w in weights]
    for s, gs in enumerate(grads):
        opt.rescale_grad = 1.0 / batch
        updater(list(range(len(ws))), [mx.nd.array(g, dtype=dtype) for g in gs], ws)
        for p, w in enumerate(ws):
            put(f'opt/{name}/out{s}_{p}', w.asnumpy())
        put(f'opt/{name}/lr{s}', opt.learning_rate)
    for p in range(len(ws)):
        state = updater.states[p]
        flat = []

        def walk(st):
            if isinstance(st, (tuple, list)):
                for x in st:
                    walk(x)
            else:
                flat.append(st)
        walk(state)
        for k, st in enumerate(flat):
            put(f'opt/{name}/state{p}_{k}', np.array([]) if st is None else st.asnumpy())


if __name__ == '__main__':
    for case in CASES:
        run(*case)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                        'optimizer_gluon.npz')
    np.savez_compressed(path, **OUT)
    print(f'wrote {len(OUT)} arrays to {os.path.normpath(path)}', os.path.getsize(path))
