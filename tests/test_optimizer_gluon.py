"""The rest of MXNet 1.9's optimizer registry (Signum, FTML, LARS, LBSGD, LAMB, DCASGD,
ccSGD, Ftrl, Adamax, Nadam, SGLD) step by step against MXNet 1.9.1
(tests/oracle/gen_optimizer_gluon.py), and Gluon's multi-precision state order."""
import json

import numpy as np
import pytest
from conftest import oracle
from test_optimizer import _make_optimizer as _make

import xpnet
from xpnet import autograd, optimizer as opt
from xpnet import layers as nn

DATA = oracle('optimizer_gluon.npz')
CASES = sorted({k.split('/')[1] for k in DATA if k.startswith('opt/')})


def _spec(case):
    return json.loads(str(DATA[f'opt/{case}/spec']))


def _flat(state):
    if isinstance(state, (tuple, list)):
        return [x for s in state for x in _flat(s)]
    return [state]


@pytest.mark.parametrize('case', CASES)
def test_matches_mxnet_every_step(case, ctx):
    spec = _spec(case)
    dtype = np.dtype(spec['dtype'])
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-3, atol=1e-3)
    o = _make(spec)
    n = sum(1 for k in DATA if k.startswith(f'opt/{case}/w'))
    weights = [xpnet.array(DATA[f'opt/{case}/w{p}'], ctx=ctx, dtype=dtype) for p in range(n)]
    states = [o.create_state_multi_precision(p, w) for p, w in enumerate(weights)]
    for s in range(spec['steps']):
        o.rescale_grad = 1.0 / spec['batch']
        for p in range(n):       # one parameter at a time, as xpnet's Trainer does
            o.update_multi_precision(p, weights[p], xpnet.array(
                DATA[f'opt/{case}/g{s}_{p}'], ctx=ctx, dtype=dtype), states[p])
        for p in range(n):
            np.testing.assert_allclose(weights[p].asnumpy(), DATA[f'opt/{case}/out{s}_{p}'],
                                       err_msg=f'{case}: weight {p} after step {s}', **tol)
            assert weights[p].dtype == dtype
        np.testing.assert_allclose(o.learning_rate, DATA[f'opt/{case}/lr{s}'], rtol=1e-6)
    for p, state in enumerate(states):
        flat = _flat(state)
        assert len(flat) == sum(k.startswith(f'opt/{case}/state{p}_') for k in DATA)
        for k, st in enumerate(flat):
            ref = DATA[f'opt/{case}/state{p}_{k}']
            if st is None:
                assert ref.size == 0
                continue
            np.testing.assert_allclose(st.asnumpy(), ref, err_msg=f'{case}: state {p}.{k}',
                                       **tol)


def test_registry_has_every_gluon_optimizer():
    names = ['sgd', 'signum', 'ftml', 'lars', 'lbsgd', 'lamb', 'dcasgd', 'nag', 'sgld', 'ccsgd',
             'adam', 'adagrad', 'rmsprop', 'adadelta', 'ftrl', 'adamax', 'nadam']
    for name in names:
        assert isinstance(opt.create(name), opt.Optimizer), name
    assert isinstance(opt.create('ccSGD'), opt.SGD)


def test_sgld_is_half_a_gradient_step_plus_gaussian_noise(ctx):
    o = opt.SGLD(learning_rate=0.04, wd=0.1, clip_gradient=1.0, rescale_grad=0.5)
    w0 = np.random.RandomState(0).randn(200, 50).astype(np.float32)
    g = np.random.RandomState(1).randn(200, 50).astype(np.float32) * 3
    w = xpnet.array(w0, ctx=ctx)
    xpnet.random.seed(3)
    o.update(0, w, xpnet.array(g, ctx=ctx), o.create_state(0, w))
    noise = w.asnumpy() - (w0 - 0.02 * (np.clip(0.5 * g, -1, 1) + 0.1 * w0))
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.2) < 0.01
    w2 = xpnet.array(w0, ctx=ctx)
    xpnet.random.seed(3)
    o.update(0, w2, xpnet.array(g, ctx=ctx), None)
    np.testing.assert_array_equal(w.asnumpy(), w2.asnumpy())      # reproducible


def test_dcasgd_momentum_rule():
    o = opt.DCASGD(learning_rate=0.1, momentum=0.5, lamda=0.2)
    w = xpnet.array([1.0, -2.0])
    state = o.create_state(0, w)
    g = np.array([0.5, 1.0], np.float32)
    prev, mom, wn = w.asnumpy(), np.zeros(2, np.float32), w.asnumpy()
    for _ in range(3):
        o.update(0, w, xpnet.array(g), state)
        mom = 0.5 * mom - 0.1 * (g + 0.2 * g * g * (wn - prev))
        prev, wn = wn, wn + mom
        np.testing.assert_allclose(w.asnumpy(), wn, rtol=1e-6)


def _float16_step(optimizer):
    """A float16 Dense after one multi-precision step of ``optimizer``, and its Trainer."""
    net = nn.Dense(3, in_units=4)
    net.initialize()
    net.cast('float16')
    trainer = xpnet.Trainer(net.collect_params(), optimizer,
                            {'learning_rate': 0.1, 'momentum': 0.9, 'multi_precision': True})
    with autograd.record():
        y = net(xpnet.nd.ones((2, 4), dtype='float16')).sum()
    y.backward()
    trainer.step(2)
    return net, trainer


def test_trainer_states_keep_gluons_multi_precision_order(tmp_path):
    net, trainer = _float16_step('sgd')
    state = trainer._states[sorted(net.collect_params()).index('weight')]
    assert state[1].dtype == np.float32                       # (momentum, weight32)
    np.testing.assert_allclose(state[1].asnumpy(), net.weight.data().asnumpy(), atol=1e-3)
    path = str(tmp_path / 'mp.states')
    trainer.save_states(path)
    other = xpnet.Trainer(net.collect_params(), 'sgd',
                          {'learning_rate': 0.1, 'momentum': 0.9, 'multi_precision': True})
    other.load_states(path)
    for i, s in trainer._states.items():
        for a, b in zip(_flat(s), _flat(other._states[i])):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


def test_version1_states_files_are_converted():
    net, trainer = _float16_step('nag')
    state = trainer.state_dict()
    meta = state['meta']
    meta['version'] = 1
    for entry in meta['params']:           # what version 1 wrote: (weight32, momentum)
        entry['state']['tuple'].reverse()
    other = xpnet.Trainer(net.collect_params(), 'nag',
                          {'learning_rate': 0.1, 'momentum': 0.9, 'multi_precision': True})
    other.load_state_dict(state)
    for i, s in trainer._states.items():
        assert other._states[i][1].dtype == np.float32
        for a, b in zip(s, other._states[i]):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
