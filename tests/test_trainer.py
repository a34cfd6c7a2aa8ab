"""Trainer: Gluon parity on an MLP (one and two devices, tests/oracle/gen_optimizer.py), gradient
reduction and identical replicas, stale gradients, grad_req add/null, lr_mult, row-sparse
gradients, save/load_states (bit-identical continuation, corrupt files), the simulated
device pair, and an MLP learning sklearn's digits by hand."""
import json
import os

import numpy as np
import pytest
from conftest import assert_placed, oracle

import xpnet
from xpnet import autograd, lr_scheduler, ops
from xpnet import layers as nn
from xpnet.trainer import StatesFileError

DATA = oracle('optimizer.npz')
KEYS = ['0.weight', '0.bias', '1.weight', '1.bias']


def mlp(ctx=None, in_units=4):
    net = nn.Sequential()
    net.add(nn.Dense(5, activation='tanh', in_units=in_units), nn.Dense(3, in_units=5))
    net.initialize(ctx=ctx)
    return net


def forward_backward(net, ctxs, x, y):
    xs = xpnet.utils.split_and_load(x, ctxs)
    ys = xpnet.utils.split_and_load(y, ctxs)
    with autograd.record():
        losses = [ops.softmax_cross_entropy(net(a), b) for a, b in zip(xs, ys)]
    for loss in losses:
        loss.backward()


@pytest.mark.parametrize('case', ['sgd_1ctx', 'sgd_2ctx', 'adam_2ctx'])
def test_matches_gluon_trainer(case, ctx_list):
    opt_name, kwargs, n_ctx = json.loads(str(DATA[f'trainer/{case}/spec']))
    ctxs = ctx_list[:n_ctx]
    net = mlp(ctxs)
    params = net.collect_params()
    for k in KEYS:
        params[k].set_data(DATA[f'trainer/p:{k}'])
    trainer = xpnet.Trainer(params, opt_name, kwargs)
    x, y = DATA['trainer/x'], DATA['trainer/y']
    for s in range(3):
        forward_backward(net, ctxs, x, y)
        trainer.step(x.shape[0])
        for k in KEYS:
            reps = [d.asnumpy() for d in params[k].list_data()]
            for r in reps[1:]:
                np.testing.assert_array_equal(r, reps[0])      # bit-identical replicas
            np.testing.assert_allclose(reps[0], DATA[f'trainer/{case}/after{s}:{k}'],
                                       rtol=1e-5, atol=1e-6, err_msg=f'{case} {k} step {s}')
    assert_placed(net, ctxs)


def test_allreduce_sums_replica_gradients(ctx_list):
    ctxs = ctx_list
    net = mlp(ctxs)
    x = np.random.randn(6, 4).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2], np.float32)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    forward_backward(net, ctxs, x, y)
    w = net.collect_params()['0.weight']
    g0, g1 = (g.asnumpy().copy() for g in w.list_grad())
    assert not np.allclose(g0, g1)
    trainer.allreduce_grads()
    for g in w.list_grad():
        np.testing.assert_allclose(g.asnumpy(), g0 + g1, rtol=1e-6)
    # the two-device step equals a one-device step on the whole batch
    single = mlp(ctxs[0])
    for k, p in single.collect_params().items():
        p.set_data(net.collect_params()[k].data(ctxs[0]))
    t1 = xpnet.Trainer(single.collect_params(), 'sgd', {'learning_rate': 0.1})
    forward_backward(single, ctxs[:1], x, y)
    trainer.update(6)
    t1.step(6)
    for k, p in net.collect_params().items():
        a, b = p.list_data()
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
        np.testing.assert_allclose(a.asnumpy(), single.collect_params()[k].data().asnumpy(),
                                   rtol=1e-5, atol=1e-7)
    assert_placed(net, ctxs)


def test_update_reduces_when_not_reduced(ctx_list):
    ctxs = ctx_list
    net = mlp(ctxs)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
    x = np.random.randn(4, 4).astype(np.float32)
    forward_backward(net, ctxs, x, np.array([0, 1, 2, 1], np.float32))
    trainer.update(4)          # no allreduce_grads() call: update reduces first
    for p in net.collect_params().values():
        a, b = p.list_data()
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
        ga, gb = p.list_grad()
        np.testing.assert_array_equal(ga.asnumpy(), gb.asnumpy())
    assert_placed(net, ctxs)


def test_step_on_device(ctx):
    net = nn.Dense(3, in_units=4)
    net.initialize(ctx=ctx)
    w0 = net.weight.data().asnumpy().copy()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.5, 'momentum': 0.9, 'wd': 0.1})
    x = xpnet.array(np.random.randn(5, 4), ctx=ctx)
    with autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()
    g = net.weight.grad().asnumpy().copy()
    trainer.step(5)
    mom = -0.5 * (g / 5 + 0.1 * w0)
    np.testing.assert_allclose(net.weight.data().asnumpy(), w0 + mom, rtol=1e-5, atol=1e-7)
    assert net.weight.data().context == ctx
    state = trainer._states[trainer._names.index('weight')]
    assert state.context == ctx
    np.testing.assert_allclose(state.asnumpy(), mom, rtol=1e-5, atol=1e-7)


def test_stale_gradients():
    net = mlp()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    x = xpnet.array(np.random.randn(2, 4))
    with autograd.record():
        loss = net[0](x).sum()        # the second layer is not used
    loss.backward()
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    with pytest.raises(UserWarning, match='`1.bias`.*has not been updated by backward'):
        trainer.step(2)
    for k, p in net.collect_params().items():     # nothing was updated
        np.testing.assert_array_equal(p.data().asnumpy(), before[k])
    trainer.step(2, ignore_stale_grad=True)
    for k, p in net.collect_params().items():
        changed = not np.array_equal(p.data().asnumpy(), before[k])
        assert changed == k.startswith('0.'), k
    assert set(trainer.optimizer._index_update_count) == {
        i for i, n in enumerate(trainer._names) if n.startswith('0.')}
    # the step cleared the flags: another step without backward is stale again
    with pytest.raises(UserWarning, match='`0.bias`'):
        trainer.step(2)


def test_grad_req_null_and_add():
    net = mlp()
    params = net.collect_params()
    params['1.weight'].grad_req = 'null'
    for k in ('0.weight', '0.bias', '1.bias'):
        params[k].grad_req = 'add'
    trainer = xpnet.Trainer(params, 'sgd', {'learning_rate': 1.0})
    w_null = params['1.weight'].data().asnumpy().copy()
    w0 = params['0.weight'].data().asnumpy().copy()
    x = xpnet.array(np.random.randn(3, 4))
    grads = []
    for _ in range(2):
        with autograd.record():
            loss = net(x).sum()
        loss.backward()
        grads.append(params['0.weight'].grad().asnumpy().copy())
    np.testing.assert_allclose(grads[1], 2 * grads[0], rtol=1e-6)    # accumulated
    trainer.step(1)
    np.testing.assert_array_equal(params['1.weight'].data().asnumpy(), w_null)
    np.testing.assert_allclose(params['0.weight'].data().asnumpy(), w0 - grads[1], rtol=1e-6)
    np.testing.assert_array_equal(params['0.weight'].grad().asnumpy(), grads[1])   # kept
    trainer.zero_grad()
    assert not params['0.weight'].grad().asnumpy().any()


def test_lr_mult_wd_mult_read_at_each_step():
    net = mlp()
    params = net.collect_params()
    trainer = xpnet.Trainer(params, 'sgd', {'learning_rate': 0.1, 'wd': 0.5})
    params['0.weight'].lr_mult = 0.0
    params['0.bias'].wd_mult = 0.0
    params['1.bias'].lr_mult = 2.0
    b0, b1 = (params[k].data().asnumpy().copy() for k in ('0.bias', '1.bias'))
    w0 = params['0.weight'].data().asnumpy().copy()
    x = xpnet.array(np.random.randn(3, 4))
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    g0b, g1b = (params[k].grad().asnumpy().copy() for k in ('0.bias', '1.bias'))
    trainer.step(1)
    np.testing.assert_array_equal(params['0.weight'].data().asnumpy(), w0)
    np.testing.assert_allclose(params['0.bias'].data().asnumpy(), b0 - 0.1 * g0b, rtol=1e-6)
    np.testing.assert_allclose(params['1.bias'].data().asnumpy(),
                               b1 - 0.2 * (g1b + 0.5 * b1), rtol=1e-6)


def test_learning_rate_and_optimizer_arguments():
    net = mlp()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.3})
    assert trainer.learning_rate == 0.3
    trainer.set_learning_rate(0.05)
    assert trainer.learning_rate == 0.05 and trainer.optimizer.lr == 0.05
    sgd = xpnet.optimizer.SGD(learning_rate=0.2)
    t2 = xpnet.Trainer(list(net.collect_params().values()), sgd)
    assert t2.optimizer is sgd and len(sgd.param_dict) == 4
    with pytest.raises(ValueError, match='optimizer_params must be None'):
        xpnet.Trainer(net.collect_params(), sgd, {'learning_rate': 0.1})
    with pytest.raises(ValueError, match="'bad' is a int"):
        xpnet.Trainer({'bad': 3}, 'sgd')
    with pytest.raises(ValueError, match='dict of Parameters'):
        xpnet.Trainer(net, 'sgd')
    with pytest.raises(ValueError, match='Cannot find optimizer'):
        xpnet.Trainer(net.collect_params(), 'nosuch')
    sched = lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=0.4)
    t3 = xpnet.Trainer(net.collect_params(), 'sgd', {'lr_scheduler': sched})
    assert t3.learning_rate == 0.4
    with pytest.raises(UserWarning, match='LRScheduler'):
        t3.set_learning_rate(0.1)


def test_context_checks_and_deferred_init():
    a = nn.Dense(2, in_units=3)
    a.initialize(ctx=xpnet.cpu(0))
    b = nn.Dense(2, in_units=3)
    b.initialize(ctx=[xpnet.cpu(0), xpnet.cpu(1)])
    with pytest.raises(ValueError, match='same contexts'):
        xpnet.Trainer(list(a.collect_params().values()) + list(b.collect_params().values()),
                      'sgd')
    with pytest.raises(RuntimeError, match="parameter 'bias' is not initialized"):
        xpnet.Trainer(nn.Dense(2, in_units=3).collect_params(), 'sgd')
    net = nn.Sequential()
    net.add(nn.Dense(4), nn.Dense(2))                 # shapes inferred at the first forward
    net.initialize()
    trainer = xpnet.Trainer(net.collect_params(), 'adam')
    with autograd.record():
        loss = net(xpnet.array(np.ones((2, 7)))).sum()
    loss.backward()
    trainer.step(2)
    assert trainer.optimizer.num_update == 1
    # a branch never run keeps deferred parameters: an error, or skipped as stale
    unused = nn.Sequential()
    unused.add(nn.Dense(4), nn.Dense(2, use_bias=False))
    unused.initialize()
    t2 = xpnet.Trainer(unused.collect_params(), 'sgd')
    with autograd.record():
        loss = unused[0](xpnet.array(np.ones((2, 7)))).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="'weight' has not been initialized yet"):
        t2.step(2)
    t2.step(2, ignore_stale_grad=True)
    assert set(t2.optimizer._index_update_count) == {0, 1}


def test_shared_parameter_updated_once():
    """A layer used twice is one parameter: one step moves it by lr * its summed gradient,
    not twice that."""
    shared = nn.Dense(3, in_units=3)
    net = nn.Sequential()
    net.add(shared, shared)
    net.initialize()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    before = shared.weight.data().asnumpy().copy()
    with autograd.record():
        loss = net(xpnet.array(np.ones((1, 3)))).sum()
    loss.backward()
    grad = shared.weight.grad().asnumpy().copy()
    trainer.step(1)
    np.testing.assert_allclose(shared.weight.data().asnumpy(), before - 0.1 * grad, rtol=1e-6)


def _sparse_net(ctx):
    net = nn.Embedding(12, 3, sparse_grad=True)
    net.initialize(ctx=ctx)
    return net


def test_row_sparse_gradient_lazy_update():
    net = _sparse_net(None)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 0.1})
    w0 = net.weight.data().asnumpy().copy()
    idx = xpnet.array(np.array([[1, 5], [5, 9]]), dtype='int64')
    with autograd.record():
        loss = net(idx).sum()
    loss.backward()
    assert net.weight.data()._grad._sparse is not None
    trainer.step(1)
    assert getattr(net.weight.data()._grad, '_sparse', None) is None      # consumed
    changed = np.where((net.weight.data().asnumpy() != w0).any(axis=1))[0]
    assert changed.tolist() == [1, 5, 9]
    mom = trainer._states[0].asnumpy()
    assert np.where(mom.any(axis=1))[0].tolist() == [1, 5, 9]
    np.testing.assert_allclose(net.weight.data().asnumpy()[5],
                               w0[5] - 0.1 * (2.0 + 0.1 * w0[5]), rtol=1e-6)
    # the dense-gradient optimizer path (no lazy update) moves every row through weight decay
    t2 = xpnet.Trainer(net.collect_params(), 'adamw', {'wd': 0.1})
    with autograd.record():
        loss = net(idx).sum()
    loss.backward()
    before = net.weight.data().asnumpy().copy()
    t2.step(1)
    assert (net.weight.data().asnumpy() != before).all(axis=1).all()


def test_row_sparse_gradient_two_devices(ctx_list):
    ctxs = ctx_list
    net = _sparse_net(ctxs)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.1})
    w0 = net.weight.data(ctxs[0]).asnumpy().copy()
    idx = [xpnet.array(np.array([2, 3]), ctx=ctxs[0], dtype='int64'),
           xpnet.array(np.array([3, 7]), ctx=ctxs[1], dtype='int64')]
    with autograd.record():
        losses = [net(i).sum() for i in idx]
    for loss in losses:
        loss.backward()
    trainer.step(2)
    a, b = (d.asnumpy() for d in net.weight.list_data())
    np.testing.assert_array_equal(a, b)
    assert np.where((a != w0).any(axis=1))[0].tolist() == [2, 3, 7]
    mean = trainer._states[0][0].asnumpy()
    # row 3 was looked up on both devices: its gradient is the sum, 2 per element
    np.testing.assert_allclose(mean[3], 0.1 * 2 / 2, rtol=1e-6)
    np.testing.assert_allclose(mean[2], 0.1 * 1 / 2, rtol=1e-6)
    assert_placed(net, ctxs)


# ---- save / load states ----------------------------------------------------------------
OPT_CONFIGS = {
    'sgd': {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-3,
            'lr_scheduler': lambda: lr_scheduler.FactorScheduler(step=2, factor=0.5,
                                                                 base_lr=0.1)},
    'nag': {'learning_rate': 0.05, 'momentum': 0.8},
    'adam': {'learning_rate': None, 'wd': 1e-3,
             'lr_scheduler': lambda: lr_scheduler.CosineScheduler(max_update=8, base_lr=0.02,
                                                                  warmup_steps=2)},
    'adamw': {'learning_rate': 0.01, 'wd': 0.1},
    'rmsprop': {'learning_rate': 0.01, 'centered': True},
    'adagrad': {'learning_rate': 0.1,
                'lr_scheduler': lambda: lr_scheduler.MultiFactorScheduler(step=[2, 4],
                                                                          factor=0.5,
                                                                          base_lr=0.1)},
    'adadelta': {'wd': 0.01},
}


def _opt_params(name):
    return {k: (v() if callable(v) else v) for k, v in OPT_CONFIGS[name].items()}


def _batches(n):
    rng = np.random.RandomState(3)
    return [(rng.randn(4, 4).astype(np.float32), rng.randint(0, 3, 4).astype(np.float32))
            for _ in range(n)]


def _train(net, trainer, batches):
    for x, y in batches:
        forward_backward(net, [xpnet.cpu(0)], x, y)
        trainer.step(len(x))


@pytest.mark.parametrize('name', sorted(OPT_CONFIGS))
def test_save_load_states_continues_bit_identically(name, tmp_path):
    batches = _batches(6)
    net_a = mlp()
    trainer_a = xpnet.Trainer(net_a.collect_params(), name, _opt_params(name))
    _train(net_a, trainer_a, batches[:3])
    fname = str(tmp_path / 'trainer.states')
    trainer_a.save_states(fname)
    weights = {k: p.data().asnumpy().copy() for k, p in net_a.collect_params().items()}
    assert os.listdir(tmp_path) == ['trainer.states']           # no temporary left behind
    _train(net_a, trainer_a, batches[3:])

    net_b = mlp()
    for k, p in net_b.collect_params().items():
        p.set_data(weights[k])
    trainer_b = xpnet.Trainer(net_b.collect_params(), name, _opt_params(name))
    trainer_b.load_states(fname)
    assert trainer_b.optimizer.num_update == 3
    assert trainer_b.optimizer._index_update_count == {i: 3 for i in range(4)}
    _train(net_b, trainer_b, batches[3:])
    for k, p in net_a.collect_params().items():
        np.testing.assert_array_equal(net_b.collect_params()[k].data().asnumpy(),
                                      p.data().asnumpy(), err_msg=f'{name}: {k}')
    assert trainer_b.learning_rate == trainer_a.learning_rate
    if trainer_a.optimizer.lr_scheduler is not None:
        assert trainer_b.optimizer.lr_scheduler.state_dict() == \
            trainer_a.optimizer.lr_scheduler.state_dict()


def test_state_dict_round_trip_on_device(ctx):
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'adam')
    with autograd.record():
        loss = net(xpnet.array(np.ones((2, 3)), ctx=ctx)).sum()
    loss.backward()
    trainer.step(2)
    state = trainer.state_dict()
    json.dumps(state['meta'])
    assert all(type(a) is np.ndarray for a in state['arrays'].values())
    assert len(state['arrays']) == 4        # mean and var of weight and bias
    other = xpnet.Trainer(net.collect_params(), 'adam')
    other.load_state_dict(state)
    for i, (m, v) in other._states.items():
        assert m.context == ctx
        np.testing.assert_array_equal(m.asnumpy(), trainer._states[i][0].asnumpy())
        np.testing.assert_array_equal(v.asnumpy(), trainer._states[i][1].asnumpy())


def test_corrupt_and_mismatched_states_files(tmp_path):
    net = mlp()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'momentum': 0.9})
    _train(net, trainer, _batches(1))
    good = str(tmp_path / 'good.states')
    trainer.save_states(good)
    raw = open(good, 'rb').read()

    truncated = str(tmp_path / 'truncated.states')
    with open(truncated, 'wb') as f:
        f.write(raw[:len(raw) // 2])
    with pytest.raises(StatesFileError, match='truncated.states.*truncated, corrupt'):
        trainer.load_states(truncated)

    garbage = str(tmp_path / 'garbage.states')
    with open(garbage, 'wb') as f:
        f.write(b'not a zip file at all' * 10)
    with pytest.raises(StatesFileError, match='garbage.states'):
        trainer.load_states(garbage)

    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF             # inside an array's compressed-free payload
    bad = str(tmp_path / 'flipped.states')
    with open(bad, 'wb') as f:
        f.write(bytes(flipped))
    with pytest.raises(StatesFileError, match='flipped.states'):
        trainer.load_states(bad)

    no_meta = str(tmp_path / 'params.npz')
    np.savez(no_meta, w=np.ones(3))
    with pytest.raises(StatesFileError, match='params.npz'):
        trainer.load_states(no_meta)

    pickled = str(tmp_path / 'pickled.npz')
    np.savez(pickled, __meta__=np.array([{'a': 1}], dtype=object))
    with pytest.raises(StatesFileError, match='pickled.npz'):
        trainer.load_states(pickled)

    with pytest.raises(FileNotFoundError, match='missing.states'):
        trainer.load_states(str(tmp_path / 'missing.states'))

    adam = xpnet.Trainer(net.collect_params(), 'adam')
    with pytest.raises(StatesFileError, match='holds SGD states but the trainer uses Adam'):
        adam.load_states(good)

    other = nn.Sequential()
    other.add(nn.Dense(5, activation='tanh', in_units=6), nn.Dense(3, in_units=5))
    other.initialize()
    with pytest.raises(StatesFileError, match=r'shape \(5, 4\).*\(5, 6\)'):
        xpnet.Trainer(other.collect_params(), 'sgd', {'momentum': 0.9}).load_states(good)
    small = nn.Dense(3, in_units=4)
    small.initialize()
    with pytest.raises(StatesFileError, match='4 parameters but the trainer has 2'):
        xpnet.Trainer(small.collect_params(), 'sgd').load_states(good)

    trainer.load_states(good)                   # the good file still loads


def test_mlp_learns_digits():
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.float32)
    perm = np.random.RandomState(0).permutation(len(x))
    x, y = x[perm], y[perm]
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    net = nn.Sequential()
    net.add(nn.Dense(64, activation='relu'), nn.Dense(10))
    net.initialize(xpnet.init.Xavier())
    trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-4})
    rng = np.random.RandomState(1)
    for _ in range(10):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            data, label = xpnet.array(x_train[b]), xpnet.array(y_train[b])
            with autograd.record():
                loss = ops.softmax_cross_entropy(net(data), label)
            loss.backward()
            trainer.step(len(b))
    accuracy = (net(xpnet.array(x_test)).asnumpy().argmax(axis=1) == y_test).mean()
    assert accuracy >= 0.95, accuracy
