"""Optimizers: every update rule against MXNet 1.9.1 step by step (tests/oracle/gen_optimizer.py),
lazy row-sparse updates, bookkeeping (update counts, multipliers, schedulers), multi-precision,
the registry, and the cost of the SGD-momentum update."""
import json
import types
import warnings

import numpy as np
import pytest
from conftest import oracle

import xpnet
from xpnet import lr_scheduler, optimizer as opt
from xpnet.backend import to_device
from xpnet.ndarray import RowSparseGrad

DATA = oracle('optimizer.npz')
CASES = sorted({k.split('/')[1] for k in DATA if k.startswith('opt/')})


def _spec(case):
    return json.loads(str(DATA[f'opt/{case}/spec']))


def _make_optimizer(spec):
    sched = None
    if spec['scheduler'] is not None:
        cls, kwargs = spec['scheduler']
        sched = getattr(lr_scheduler, cls)(**kwargs)
    param_dict = None
    if spec['mults']:
        param_dict = {i: types.SimpleNamespace(lr_mult=m[0], wd_mult=m[1])
                      for i, m in enumerate(spec['mults'])}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)   # lr overriding the scheduler's base_lr
        return opt.create(spec['optimizer'], lr_scheduler=sched, param_dict=param_dict,
                          **spec['kwargs'])


def _grad(case, step, p, spec, ctx):
    if spec['sparse'] and p == 0:
        rows = to_device(DATA[f'opt/{case}/rows{step}'], ctx)
        vals = to_device(DATA[f'opt/{case}/vals{step}'], ctx)
        return RowSparseGrad(rows, vals, DATA[f'opt/{case}/w0'].shape)
    return xpnet.array(DATA[f'opt/{case}/g{step}_{p}'], ctx=ctx)


@pytest.mark.parametrize('case', CASES)
def test_matches_mxnet_every_step(case, ctx):
    spec = _spec(case)
    o = _make_optimizer(spec)
    n_params = 2
    weights = [xpnet.array(DATA[f'opt/{case}/w{p}'], ctx=ctx) for p in range(n_params)]
    states = [o.create_state_multi_precision(p, w) for p, w in enumerate(weights)]
    for s in range(spec['steps']):
        o.rescale_grad = 1.0 / spec['batch']
        grads = [_grad(case, s, p, spec, ctx) for p in range(n_params)]
        if s % 2:    # the list form (MXNet's aggregated update) and one index at a time
            o.update(list(range(n_params)), weights, grads, states)
        else:
            for p in range(n_params):
                o.update(p, weights[p], grads[p], states[p])
        for p in range(n_params):
            np.testing.assert_allclose(weights[p].asnumpy(), DATA[f'opt/{case}/out{s}_{p}'],
                                       rtol=2e-5, atol=2e-6,
                                       err_msg=f'{case}: weight {p} after step {s}')
            assert weights[p].dtype == np.float32
        np.testing.assert_allclose(o.learning_rate, DATA[f'opt/{case}/lr{s}'], rtol=1e-12)
    for p, state in enumerate(states):
        flat = [] if state is None else list(state) if isinstance(state, tuple) else [state]
        for k, st in enumerate(flat):
            np.testing.assert_allclose(st.asnumpy(), DATA[f'opt/{case}/state{p}_{k}'],
                                       rtol=2e-5, atol=2e-6, err_msg=f'{case}: state {p}.{k}')
        assert len(flat) == sum(k.startswith(f'opt/{case}/state{p}_') for k in DATA)
    assert o.num_update == spec['steps']


@pytest.mark.parametrize('name', ['sgd', 'adam', 'adagrad'])
def test_lazy_sparse_update_touches_only_rows(name, ctx):
    o = opt.create(name, learning_rate=0.1, wd=0.1, **({'momentum': 0.9} if name == 'sgd'
                                                        else {}))
    w0 = np.random.RandomState(1).randn(10, 3).astype(np.float32)
    w = xpnet.array(w0, ctx=ctx)
    state = o.create_state(0, w)
    rows = np.array([7, 2, 7], np.int64)
    g = RowSparseGrad(to_device(rows, ctx), to_device(np.ones((3, 3), np.float32), ctx),
                      (10, 3))
    o.update(0, w, g, state)
    changed = np.where((w.asnumpy() != w0).any(axis=1))[0]
    assert changed.tolist() == [2, 7]
    # row 7 was looked up twice: its gradient is the sum (coalesced)
    dense = xpnet.array(w0, ctx=ctx)
    o2 = opt.create(name, learning_rate=0.1, wd=0.1, **({'momentum': 0.9} if name == 'sgd'
                                                         else {}))
    gd = np.zeros((10, 3), np.float32)
    np.add.at(gd, rows, 1.0)
    o2.update(0, dense, xpnet.array(gd, ctx=ctx), o2.create_state(0, dense))
    np.testing.assert_allclose(w.asnumpy()[[2, 7]], dense.asnumpy()[[2, 7]], rtol=1e-6)
    assert o.updates_rows_only(g)


def test_non_lazy_sparse_update_densifies():
    o = opt.create('sgd', learning_rate=0.1, wd=0.1, lazy_update=False)
    w0 = np.ones((5, 2), np.float32)
    w = xpnet.array(w0)
    g = RowSparseGrad(np.array([1]), np.ones((1, 2), np.float32), (5, 2))
    o.update(0, w, g, o.create_state(0, w))
    assert (w.asnumpy() != w0).all()            # weight decay reaches every row
    assert not o.updates_rows_only(g)
    nag = opt.create('nag', momentum=0.9)
    assert not nag.updates_rows_only(g)         # NAG has no lazy update


def test_update_counts_and_scheduler():
    sched = lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=1.0)
    o = opt.SGD(lr_scheduler=sched, begin_num_update=0)
    w = xpnet.array(np.zeros(3))
    g = xpnet.array(np.ones(3))
    lrs = []
    for _ in range(5):
        before = w.asnumpy().copy()
        o.update(0, w, g, None)
        lrs.append(float(before[0] - w.asnumpy()[0]))
    # num_update is 1 at the first step; the factor applies once num_update > 2, > 4
    np.testing.assert_allclose(lrs, [1, 1, 0.5, 0.5, 0.25], rtol=1e-6)
    assert o.num_update == 5 and o._index_update_count == {0: 5}
    # an index updated for the first time starts from begin_num_update; num_update is the max
    o.update(1, xpnet.array(np.zeros(3)), g, None)
    assert o._index_update_count[1] == 1 and o.num_update == 5


def test_begin_num_update_sets_adam_bias_correction():
    a = opt.Adam(learning_rate=0.1, begin_num_update=10)
    b = opt.Adam(learning_rate=0.1)
    wa, wb = xpnet.array(np.zeros(2)), xpnet.array(np.zeros(2))
    g = xpnet.array(np.array([1.0, -2.0]))
    a.update(0, wa, g, a.create_state(0, wa))
    b.update(0, wb, g, b.create_state(0, wb))
    assert a._index_update_count[0] == 11
    # t = 11 instead of 1: a smaller bias-corrected step
    assert abs(wa.asnumpy()[0]) < abs(wb.asnumpy()[0])


def test_lr_and_wd_multipliers_by_index_and_name():
    """The step each weight takes: ``lr * lr_mult * (grad + wd * wd_mult * weight)``."""
    def step(o, index):
        w = xpnet.array(np.ones(2))
        o.update(index, w, xpnet.array(np.full(2, 0.5)), None)
        return 1.0 - float(w.asnumpy()[0])

    o = opt.SGD(learning_rate=1.0, wd=0.5, param_idx2name={0: '0.weight', 1: '0.bias'})
    assert step(o, 0) == 1.0 and step(o, 1) == 0.5   # MXNet: no decay on biases by name
    o.set_lr_mult({1: 3.0})
    o.set_wd_mult({'0.bias': 2.0})
    assert step(o, 1) == 3.0 * (0.5 + 0.5 * 2.0) and step(o, 0) == 1.0
    # a Parameter in param_dict wins, and is read at every update
    p = types.SimpleNamespace(lr_mult=0.25, wd_mult=4.0)
    o.param_dict = {1: p}
    assert step(o, 1) == 0.25 * (0.5 + 0.5 * 4.0)
    p.lr_mult = 0.5
    assert step(o, 1) == 0.5 * (0.5 + 0.5 * 4.0)


def test_learning_rate_api():
    o = opt.create('SGD', learning_rate=0.3)
    assert o.learning_rate == 0.3
    o.set_learning_rate(0.2)
    assert o.learning_rate == 0.2
    assert opt.SGD().learning_rate == 0.01        # default without a scheduler
    s = opt.SGD(lr_scheduler=lr_scheduler.FactorScheduler(step=5, base_lr=0.7))
    assert s.learning_rate == 0.7
    with pytest.raises(UserWarning, match='LRScheduler'):
        s.set_learning_rate(0.1)
    with pytest.warns(UserWarning, match='overwritten'):
        s2 = opt.SGD(learning_rate=0.5, lr_scheduler=lr_scheduler.FactorScheduler(step=5))
    assert s2.lr_scheduler.base_lr == 0.5


def test_registry_and_errors():
    for name, cls in [('sgd', opt.SGD), ('nag', opt.NAG), ('adam', opt.Adam),
                      ('adamw', opt.AdamW), ('rmsprop', opt.RMSProp), ('adagrad', opt.AdaGrad),
                      ('adadelta', opt.AdaDelta)]:
        assert type(opt.create(name)) is cls
    with pytest.raises(ValueError, match="Cannot find optimizer 'nosuch'"):
        opt.create('nosuch')
    assert opt.Adam().lr == 0.001 and opt.RMSProp().lr == 0.001 and opt.AdaGrad().lr == 0.01

    @opt.register
    class SignSGD(opt.Optimizer):
        def _step(self, index, weight, grad, state, lr, wd):
            weight._data -= lr * weight.xp.sign(grad._data)

    o = opt.create('signsgd', learning_rate=0.5)
    w = xpnet.array(np.zeros(2))
    o.update(0, w, xpnet.array(np.array([3.0, -1.0])), None)
    np.testing.assert_array_equal(w.asnumpy(), [-0.5, 0.5])
    del opt.Optimizer.opt_registry['signsgd']


def test_clip_gradient_off_values():
    for clip in (None, 0, -1.0):
        o = opt.SGD(learning_rate=1.0, clip_gradient=clip)
        w = xpnet.array(np.zeros(2))
        o.update(0, w, xpnet.array(np.array([5.0, -5.0])), None)
        np.testing.assert_array_equal(w.asnumpy(), [-5.0, 5.0])


def test_rmsprop_clip_weights():
    o = opt.RMSProp(learning_rate=10.0, clip_weights=0.1)
    w = xpnet.array(np.zeros(3))
    o.update(0, w, xpnet.array(np.array([1.0, -1.0, 0.0])), o.create_state(0, w))
    np.testing.assert_allclose(w.asnumpy(), [-0.1, 0.1, 0.0])


def test_gradient_is_not_modified():
    g0 = np.array([1.0, -2.0, 3.0], np.float32)
    for name in ['sgd', 'nag', 'adam', 'adamw', 'rmsprop', 'adagrad', 'adadelta']:
        o = opt.create(name, rescale_grad=0.5, wd=0.1, clip_gradient=1.0)
        w = xpnet.array(np.ones(3))
        g = xpnet.array(g0)
        o.update(0, w, g, o.create_state(0, w))
        np.testing.assert_array_equal(g.asnumpy(), g0, err_msg=name)


def test_multi_precision_float16():
    w32 = np.random.RandomState(0).randn(4, 3).astype(np.float32)
    g = np.random.RandomState(1).randn(4, 3).astype(np.float32)
    o = opt.SGD(learning_rate=0.1, momentum=0.9, multi_precision=True)
    w16 = xpnet.array(w32, dtype='float16')
    state = o.create_state_multi_precision(0, w16)
    assert state[1].dtype == np.float32 and state[0].dtype == np.float32   # Gluon's order
    ref = opt.SGD(learning_rate=0.1, momentum=0.9)
    wref = xpnet.array(w16.asnumpy().astype(np.float32))
    sref = ref.create_state(0, wref)
    for _ in range(3):
        o.update_multi_precision(0, w16, xpnet.array(g, dtype='float16'), state)
        ref.update(0, wref, xpnet.array(g.astype(np.float16).astype(np.float32)), sref)
    assert w16.dtype == np.float16
    np.testing.assert_array_equal(state[1].asnumpy(), wref.asnumpy())        # weight32
    np.testing.assert_array_equal(state[0].asnumpy(), sref.asnumpy())        # momentum
    np.testing.assert_array_equal(w16.asnumpy(), wref.asnumpy().astype(np.float16))
    with pytest.warns(UserWarning, match='float16'):
        opt.SGD(momentum=0.9).create_state_multi_precision(0, w16)


def test_optimizer_state_dict_round_trip():
    sched = lr_scheduler.CosineScheduler(max_update=10, base_lr=0.1, warmup_steps=2)
    o = opt.Adam(learning_rate=None, lr_scheduler=sched, wd=0.01, beta1=0.8)
    o.set_lr_mult({0: 2.0, 'x': 3.0})
    w = xpnet.array(np.ones(2))
    for _ in range(4):
        o.update(0, w, xpnet.array(np.ones(2)), o.create_state(0, w))
    d = json.loads(json.dumps(o.state_dict()))
    o2 = opt.Adam()
    o2.load_state_dict(d)
    assert o2.beta1 == 0.8 and o2.wd == 0.01 and o2.num_update == 4
    assert o2._index_update_count == {0: 4} and o2.lr_mult == {0: 2.0, 'x': 3.0}
    assert type(o2.lr_scheduler) is lr_scheduler.CosineScheduler
    assert o2.learning_rate == o.learning_rate
    with pytest.raises(ValueError, match='Adam'):
        opt.SGD().load_state_dict(d)


def test_sgd_momentum_update_matches_handwritten_numpy_in_place():
    """SGD momentum on several weights gives the numbers of a hand-written float32 NumPy
    update, in place (the weight and state objects are the ones passed in). Its cost
    against that update is measured by benchmarks/bench_optimizer.py."""
    rng = np.random.RandomState(0)
    shapes = [(64, 32), (64,), (10, 64)]
    ws = [rng.randn(*s).astype(np.float32) for s in shapes]
    gs = [rng.randn(*s).astype(np.float32) for s in shapes]
    vs = [np.zeros(s, np.float32) for s in shapes]
    o = opt.SGD(learning_rate=0.1, momentum=0.9, rescale_grad=1 / 128)
    nws = [xpnet.array(w) for w in ws]
    ngs = [xpnet.array(g) for g in gs]
    nstates = [o.create_state(i, w) for i, w in enumerate(nws)]
    buffers = [w._data for w in nws]
    for _ in range(3):
        for i in range(len(nws)):
            o.update(i, nws[i], ngs[i], nstates[i])
        for w, g, v in zip(ws, gs, vs):
            v *= np.float32(0.9)
            v -= np.float32(0.1) * (g * np.float32(1 / 128))
            w += v
    for w, nw, buf in zip(ws, nws, buffers):
        assert nw._data is buf and nw.dtype == np.float32
        np.testing.assert_allclose(nw.asnumpy(), w, rtol=1e-6, atol=1e-7)
