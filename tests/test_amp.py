"""xpnet.amp: which ops run in float16 and which in float32, float32 master weights, the
device-side dynamic loss scaler (skip and halve on overflow, grow after clean updates,
nothing read back), its place in trainer states and checkpoints, Estimator(amp=True), and
the digits MLP reaching its float32 accuracy under AMP."""
import logging
import os
import sys

import numpy as np
import pytest

import xpnet
from xpnet import amp, autograd, nd
from xpnet import layers as nn
from xpnet.backend import simulated, sim
from xpnet.layers import rnn
from xpnet.ops import _amp as policy
from xpnet.trainer import StatesFileError

from estimator_helpers import make_data, make_estimator, make_loader, params_of

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


def _x(ctx, shape, seed=0, dtype=np.float32):
    return nd.array(np.random.RandomState(seed).uniform(-1, 1, shape).astype(dtype), ctx=ctx)


# ---- which precision each op runs in -----------------------------------------------------------

def test_every_policy_names_a_public_op():
    import xpnet.ops as ops
    for name in policy.POLICIES:
        assert hasattr(ops, name), name
        assert getattr(ops, name).__wrapped__.__name__ in (name, 'op'), name
    assert amp.list_lp16_ops() == ['convolution', 'deconvolution', 'fully_connected',
                                   'rnn_sequence']
    assert {'softmax', 'log_softmax', 'batch_norm', 'normalize', 'sum', 'exp'} <= \
        set(amp.list_fp32_ops())


def test_amp_off_changes_no_dtype(ctx):
    x = _x(ctx, (4, 5))
    w, b = _x(ctx, (3, 5), 1), _x(ctx, (3,), 2)
    assert nd.FullyConnected(x, w, b, num_hidden=3).dtype == F32
    h = x.astype('float16')
    assert nd.softmax(h).dtype == F16 and nd.exp(h).dtype == F16     # as without xpnet.amp
    assert not amp.is_enabled() and amp.target_dtype() is None


def test_gemm_ops_compute_in_float16_and_sensitive_ops_in_float32(ctx):
    amp.init()
    x = _x(ctx, (2, 3, 6, 6))
    conv = nn.Conv2D(4, 3, in_channels=3)
    deconv = nn.Conv2DTranspose(2, 3, in_channels=4)
    dense = nn.Dense(5)
    for blk in (conv, deconv, dense):
        blk.initialize(ctx=ctx)
    y = conv(x)
    assert y.dtype == F16 and deconv(y).dtype == F16 and dense(y).dtype == F16
    assert conv.weight.data(ctx).dtype == F32          # parameters stay float32
    h = dense(y)
    for fn in (nd.softmax, nd.log_softmax, nd.exp, lambda t: nd.log(nd.abs(t) + 1.0),
               nd.sum, nd.mean, nd.norm,
               lambda t: t ** 2, lambda t: nd.Activation(t, 'softrelu')):
        assert fn(h).dtype == F32
    # the rest runs in its input's type; float16 meeting float32 computes in float32
    assert nd.relu(h).dtype == F16 and nd.tanh(h).dtype == F16
    assert nd.Activation(h, 'relu').dtype == F16 and (h * 2.0).dtype == F16
    assert (h + _x(ctx, (2, 5))).dtype == F32


def test_normalization_statistics_in_float32(ctx):
    amp.init()
    h = _x(ctx, (4, 3, 5, 5)).astype('float16') * 100 + 1000    # float16 sums would overflow
    bn, ln, gn, inorm = nn.BatchNorm(), nn.LayerNorm(), nn.GroupNorm(3), nn.InstanceNorm()
    for blk in (bn, ln, gn, inorm):
        blk.initialize(ctx=ctx)
    with autograd.record():
        y = bn(h)
    assert y.dtype == F16                         # BatchNorm keeps the data's type ...
    ref = h.asnumpy().astype(np.float64)
    mean = ref.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_mean.data(ctx).asnumpy(), 0.1 * mean, rtol=1e-5)
    assert bn.running_mean.data(ctx).dtype == F32  # ... with float32 statistics
    for blk in (ln, gn, inorm):
        out = blk(h)
        assert out.dtype == F32 and np.isfinite(out.asnumpy()).all()


def test_sync_batchnorm_statistics_in_float32(ctx_list):
    amp.init()
    bn = nn.SyncBatchNorm(in_channels=3)
    bn.initialize(ctx=ctx_list)
    h = _x(ctx_list[0], (8, 3)).asnumpy().astype(np.float16) * 100 + 1000
    parts = xpnet.utils.split_and_load(h, ctx_list)
    parts = [p.astype('float16') for p in parts]

    def run(x):
        with autograd.record():
            return bn(x)
    outs = xpnet.parallel.parallel_apply(run, [(p,) for p in parts],
                                         contexts=[p.context for p in parts])
    assert [o.dtype for o in outs] == [F16, F16]
    mean = h.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(bn.running_mean.data(ctx_list[0]).asnumpy(), 0.1 * mean,
                               rtol=1e-5)


@pytest.mark.parametrize('make, shape', [
    (lambda: rnn.LSTM(8, num_layers=2, bidirectional=True), (5, 3, 4)),
    (lambda: rnn.GRU(8), (5, 3, 4)),
])
def test_fused_rnn_runs_in_float16(ctx, make, shape):
    amp.init()
    layer = make()
    layer.initialize(ctx=ctx)
    out = layer(_x(ctx, shape))
    assert out.dtype == F16
    assert all(p.data(ctx).dtype == F32 for p in layer.collect_params().values())


def test_losses_compute_in_float32(ctx):
    amp.init()
    pred = _x(ctx, (4, 3)).astype('float16')
    label = nd.array([0, 2, 1, 1], ctx=ctx)
    for loss_fn, lab in [(xpnet.loss.SoftmaxCrossEntropyLoss(), label),
                         (xpnet.loss.L2Loss(), _x(ctx, (4, 3), 5)),
                         (xpnet.loss.SigmoidBCELoss(), _x(ctx, (4, 3), 6) > 0)]:
        assert loss_fn(pred, lab).dtype == F32, type(loss_fn).__name__


# ---- gradients reach the float32 master weights ------------------------------------------------

def _grads(net, x, ctx, use_amp, scale=1024.0):
    if use_amp:
        amp.init()
    try:
        with autograd.record():
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            loss = (out.astype('float32') ** 2).mean() * scale
        loss.backward()
    finally:
        amp._reset()
    return {k: p.grad(ctx).asnumpy() / scale for k, p in net.collect_params().items()
            if p.grad_req != 'null'}


class _CellNet(nn.Block):
    def __init__(self):
        super().__init__()
        self.cell = rnn.LSTMCell(8)
        self.out = nn.Dense(3, flatten=False)

    def forward(self, x):
        outs, _ = self.cell.unroll(4, x, merge_outputs=True)
        return self.out(outs)


@pytest.mark.parametrize('make, shape', [
    (lambda: nn.Sequential().add(nn.Conv2D(4, 3), nn.BatchNorm(), nn.Activation('relu'),
                                 nn.Dense(5)), (2, 3, 6, 6)),
    (lambda: nn.Sequential().add(nn.Dense(12, flatten=False), nn.LayerNorm(),
                                 nn.Dense(4, flatten=False)), (3, 5, 6)),
    (lambda: rnn.LSTM(8), (4, 3, 5)),
    (_CellNet, (3, 4, 5)),
])
def test_float32_gradients_reach_the_master_weights(ctx, make, shape):
    net = make()
    net.initialize(ctx=ctx)
    x = _x(ctx, shape, 3)
    ref = _grads(net, x, ctx, False)
    got = _grads(net, x, ctx, True)
    top = max(np.abs(g).max() for g in ref.values())
    for k, g in got.items():
        assert g.dtype == F32, k
        assert np.abs(g).max() > 0 or np.abs(ref[k]).max() < 1e-3 * top, k
        np.testing.assert_allclose(g, ref[k], atol=2e-2 * top, err_msg=k)


# ---- the loss scaler ----------------------------------------------------------------------------

def _setup(ctx, optimizer='sgd', params=None, window=2000, contexts=None):
    amp.init()
    xpnet.random.seed(1)
    net = nn.Sequential().add(nn.Dense(6, activation='relu', in_units=4), nn.Dense(3, in_units=6))
    net.initialize(ctx=contexts or ctx)
    trainer = xpnet.Trainer(net.collect_params(), optimizer,
                            params or {'learning_rate': 0.1, 'momentum': 0.9})
    amp.init_trainer(trainer)
    trainer._amp_loss_scaler.scale_window = window
    return net, trainer


def _backward(net, trainer, ctx, seed=0, crafted=None):
    x, y = _x(ctx, (5, 4), seed), nd.array(np.arange(5) % 3, ctx=ctx)
    with autograd.record():
        loss = xpnet.loss.SoftmaxCrossEntropyLoss()(net(x), y)
        with amp.scale_loss(loss, trainer) as scaled:
            autograd.backward(scaled)
    if crafted is not None:
        crafted.grad()[0] = np.inf        # an overflowed gradient (still scaled)
    return loss


def _snapshot(net, trainer):
    weights = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    states = {i: [s.asnumpy().copy() for s in _arrays(st)]
              for i, st in trainer._states.items()}
    return weights, states


def _arrays(state):
    if isinstance(state, xpnet.NDArray):
        return [state]
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _arrays(s)]
    return []


@pytest.mark.parametrize('optimizer, params', [
    ('sgd', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-3}),
    ('adam', {'learning_rate': 0.01}),
])
def test_overflow_skips_the_update_and_halves_the_scale(ctx, optimizer, params):
    net, trainer = _setup(ctx, optimizer, params)
    scaler = trainer._amp_loss_scaler
    assert scaler.loss_scale == 2.0 ** 16
    _backward(net, trainer, ctx)
    trainer.step(5)                       # a clean step: states exist, weights moved
    before = _snapshot(net, trainer)
    _backward(net, trainer, ctx, seed=1, crafted=net[0].weight)    # an inf gradient
    trainer.step(5)
    after = _snapshot(net, trainer)
    for k in before[0]:
        np.testing.assert_array_equal(after[0][k], before[0][k], err_msg=k)
    for i in before[1]:
        for a, b in zip(after[1][i], before[1][i]):
            np.testing.assert_array_equal(a, b)
    assert scaler.loss_scale == 2.0 ** 15
    _backward(net, trainer, ctx, seed=2)  # training goes on with the halved scale
    trainer.step(5)
    assert not np.array_equal(net[0].weight.data().asnumpy(), before[0]['0.weight'])
    assert scaler.loss_scale == 2.0 ** 15


def test_the_scale_grows_after_a_window_of_clean_updates_up_to_the_maximum(ctx):
    net, trainer = _setup(ctx)
    scaler = trainer._amp_loss_scaler = amp.LossScaler(init_scale=2.0 ** 10, scale_window=3,
                                                       max_scale=2.0 ** 12)
    scaler._bind(ctx)
    seen = []
    for step in range(10):
        _backward(net, trainer, ctx, seed=step)
        trainer.step(5)
        seen.append(scaler.loss_scale)
    assert seen == [2.0 ** 10] * 2 + [2.0 ** 11] * 3 + [2.0 ** 12] * 5    # then capped
    _backward(net, trainer, ctx, crafted=net[1].bias)
    trainer.step(5)
    assert scaler.state_dict() == {'loss_scale': 2.0 ** 11, 'unskipped': 0, 'armed': False}


def test_the_gradients_after_allreduce_are_the_true_gradients(ctx):
    net, trainer = _setup(ctx)
    x, y = _x(ctx, (5, 4)), nd.array(np.arange(5) % 3, ctx=ctx)
    with autograd.record():
        loss = xpnet.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()                      # the same computation, unscaled
    ref = {k: p.grad().asnumpy().copy() for k, p in net.collect_params().items()}
    _backward(net, trainer, ctx)
    trainer.allreduce_grads()            # unscales: clipping or reading may follow
    got = {k: p.grad().asnumpy().copy() for k, p in net.collect_params().items()}
    amp.unscale(trainer)                 # MXNet's explicit call: already done, a no-op
    for k, p in net.collect_params().items():
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-2,
                                   atol=2e-3 * np.abs(ref[k]).max(), err_msg=k)
        np.testing.assert_array_equal(p.grad().asnumpy(), got[k], err_msg=k)
    trainer.update(5)
    assert trainer._amp_loss_scaler.loss_scale == 2.0 ** 16


def test_a_step_without_scale_loss_is_a_plain_step(ctx):
    net, trainer = _setup(ctx)
    x, y = _x(ctx, (5, 4)), nd.array(np.arange(5) % 3, ctx=ctx)
    with autograd.record():
        loss = xpnet.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    grad = net[1].bias.grad().asnumpy().copy()
    bias = net[1].bias.data().asnumpy().copy()
    trainer.step(5)                       # nothing to unscale, nothing to skip
    np.testing.assert_allclose(net[1].bias.data().asnumpy(), bias - 0.1 * grad / 5,
                               rtol=1e-5)
    assert trainer._amp_loss_scaler.loss_scale == 2.0 ** 16


def test_scale_loss_takes_lists_and_needs_a_scaler(ctx):
    net, trainer = _setup(ctx)
    loss = _x(ctx, (3,))
    with amp.scale_loss([loss, loss * 2], trainer) as scaled:
        assert isinstance(scaled, list) and len(scaled) == 2
        np.testing.assert_allclose(scaled[1].asnumpy(), loss.asnumpy() * 2 ** 17, rtol=1e-6)
    plain = xpnet.Trainer(net.collect_params(), 'sgd')
    with pytest.raises(ValueError, match='init_trainer'):
        with amp.scale_loss(loss, plain):
            pass


@pytest.mark.parametrize('kind', ['sim', 'gpu'])
def test_an_amp_step_reads_nothing_back_on_the_device(kind):
    if kind == 'gpu' and not xpnet.num_gpus():
        pytest.skip('needs a GPU')
    ctx = sim(1) if kind == 'sim' else xpnet.gpu(0)
    if kind == 'sim':
        no_sync = simulated.allow_synchronize
    else:
        import cupyx
        no_sync = cupyx.allow_synchronize
    net, trainer = _setup(ctx)
    data = [(_x(ctx, (5, 4), seed), nd.array(np.arange(5) % 3, ctx=ctx)) for seed in range(3)]
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()

    def step(x, y, overflow=False):
        with autograd.record():
            with amp.scale_loss(loss_fn(net(x), y), trainer) as scaled:
                autograd.backward(scaled)
        if overflow:
            net[0].weight.grad()[...] = np.inf     # a fill on the device
        trainer.step(5)
    step(*data[0])
    with ctx.use(), simulated.counting() as c, no_sync(False):
        step(*data[1])
        step(*data[2], overflow=True)
    assert c.syncs == 0
    assert trainer._amp_loss_scaler.loss_scale == 2.0 ** 15


def test_replicas_skip_together_on_several_devices(ctx_list):
    net, trainer = _setup(ctx_list[0], contexts=ctx_list)
    x = _x(ctx_list[0], (6, 4))
    y = np.arange(6) % 3
    xs = xpnet.utils.split_and_load(x.asnumpy(), ctx_list)
    ys = xpnet.utils.split_and_load(y, ctx_list)
    for crafted in (False, True):
        with autograd.record():
            losses = [xpnet.loss.SoftmaxCrossEntropyLoss()(net(a), b) for a, b in zip(xs, ys)]
        with amp.scale_loss(losses, trainer) as scaled:
            autograd.backward(scaled)
        before = {k: p.data(ctx_list[0]).asnumpy() for k, p in net.collect_params().items()}
        if crafted:     # an overflow on the second device alone skips the update everywhere
            net[0].weight.grad(ctx_list[1])[...] = np.inf
        trainer.step(6)
        for k, p in net.collect_params().items():
            a, b = (d.asnumpy() for d in p.list_data())
            np.testing.assert_array_equal(a, b, err_msg=k)
            assert np.array_equal(a, before[k]) == crafted, k
    assert trainer._amp_loss_scaler.loss_scale == 2.0 ** 15


def test_amp_training_matches_between_cpu_and_the_simulated_device():
    results = []
    for ctx in (xpnet.cpu(), sim(1)):
        net, trainer = _setup(ctx)
        for step in range(4):
            _backward(net, trainer, ctx, seed=step, crafted=net[0].bias if step == 1 else None)
            trainer.step(5)
        results.append(({k: p.data(ctx).asnumpy() for k, p in net.collect_params().items()},
                        trainer._amp_loss_scaler.state_dict()))
        amp._reset()
    (cpu_params, cpu_scaler), (sim_params, sim_scaler) = results
    assert cpu_scaler == sim_scaler == {'loss_scale': 2.0 ** 15, 'unskipped': 2,
                                        'armed': False}
    for k in cpu_params:    # float16 products: host BLAS in float32 vs NumPy's float16 loop
        np.testing.assert_allclose(cpu_params[k], sim_params[k], rtol=1e-3, atol=1e-4,
                                   err_msg=k)


# ---- states and checkpoints ---------------------------------------------------------------------

def test_trainer_states_keep_the_loss_scaler(tmp_path, ctx):
    net, trainer = _setup(ctx, window=5)
    for step, crafted in enumerate([None, net[0].weight, None]):
        _backward(net, trainer, ctx, seed=step, crafted=crafted)
        trainer.step(5)
    path = str(tmp_path / 'states')
    trainer.save_states(path)
    other = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    amp.init_trainer(other)
    other.load_states(path)
    assert other._amp_loss_scaler.state_dict() == {'loss_scale': 2.0 ** 15, 'unskipped': 1,
                                                   'armed': False}
    for bad in ({'loss_scale': -1.0, 'unskipped': 0}, {'loss_scale': 2.0, 'unskipped': 'x'},
                'scale'):
        state = trainer.state_dict()
        state['meta']['amp'] = bad
        np.savez(str(tmp_path / 'bad.npz'), __meta__=np.array(__import__('json').dumps(
            state['meta'])), **state['arrays'])
        with pytest.raises(StatesFileError, match='AMP'):
            other.load_states(str(tmp_path / 'bad.npz'))


class _Crash(xpnet.handlers.BatchEnd):
    def __init__(self, at):
        self.at = at

    def batch_end(self, est, *args, **kwargs):
        if est.progress.batches == self.at:
            raise KeyboardInterrupt('crash')


def _amp_estimator(ctx, seed=7):
    xpnet.random.seed(seed)
    x, y = make_data(n=64, seed=3)
    est = make_estimator(ctx=ctx, dropout=0.3, optimizer='adam', lr=0.02, amp=True)
    est.trainer._amp_loss_scaler.scale_window = 3      # growth and overflow both happen
    return est, make_loader(x * 3000, y, batch_size=16, shuffle=True)


def test_estimator_amp_resumes_exactly_with_the_scaler_state(tmp_path, ctx):
    from xpnet.handlers import CheckpointHandler
    ref, train = _amp_estimator(ctx)
    ref.fit(train, epochs=3)
    ref_scaler = ref.trainer._amp_loss_scaler.state_dict()
    assert ref_scaler['loss_scale'] != 2.0 ** 16         # it moved during the run
    est, train = _amp_estimator(ctx)
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, epochs=3, event_handlers=[
            CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=3), _Crash(7)])
    assert not amp.is_enabled()            # the run's AMP scope ended with it
    est, train = _amp_estimator(ctx, seed=99)
    handler = CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=3,
                                resume_from_checkpoint=True)
    est.fit(train, epochs=3, event_handlers=[handler])
    assert handler.resumed_from == 'model-epoch1batch6'
    assert est.trainer._amp_loss_scaler.state_dict() == ref_scaler
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k], err_msg=k)


# ---- turning it on and off ----------------------------------------------------------------------

def test_init_is_process_wide_and_checked():
    with pytest.raises(RuntimeError, match='amp.init'):
        amp.init_trainer(xpnet.Trainer(_dense().collect_params(), 'sgd'))
    amp.init()
    amp.init('float16')                   # again: nothing changes
    assert amp.is_enabled() and amp.target_dtype() == F16
    with pytest.raises(TypeError, match='Trainer'):
        amp.init_trainer(xpnet.optimizer.SGD())
    with pytest.raises(ValueError, match='target_dtype'):
        amp.init('float64')
    with pytest.raises(NotImplementedError, match='lists'):
        amp.init(fp32_ops=['softmax'])
    trainer = xpnet.Trainer(_dense().collect_params(), 'sgd')
    amp.init_trainer(trainer)
    first = trainer._amp_loss_scaler
    amp.init_trainer(trainer)
    assert trainer._amp_loss_scaler is first
    assert xpnet.contrib.amp is amp


def _dense():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    return net


def test_bfloat16_names_the_dtype_and_the_device():
    with pytest.raises(ValueError, match=r"'bfloat16' is not supported on cpu: NumPy"):
        amp.init('bfloat16')
    assert not amp.is_enabled()
    with pytest.raises(ValueError, match=r"'bfloat16' is not supported on sim\(1\)"):
        make_estimator(ctx=sim(1), amp='bfloat16')
    with pytest.raises(ValueError, match='amp must be'):
        make_estimator(amp='float64')


def test_clipping_and_accumulation_see_unscaled_gradients():
    from xpnet.handlers import GradientUpdateHandler
    results = []
    for use_amp in (False, True):
        xpnet.random.seed(3)
        est = make_estimator(ctx=sim(1), lr=0.5, amp=use_amp)
        if use_amp:     # a scale that never overflows here: both runs make the same updates
            est.trainer._amp_loss_scaler.load_state_dict({'loss_scale': 256.0, 'unskipped': 0})
        est.fit(make_loader(), epochs=2, event_handlers=[
            GradientUpdateHandler(accumulate=2, clip_global_norm=0.05)])
        results.append(params_of(est.net))
    xpnet.random.seed(3)
    start = params_of(make_estimator(ctx=sim(1)).net)
    for k in results[0]:
        moved = np.abs(results[0][k] - start[k]).max()
        assert moved > 0.01, k
        np.testing.assert_allclose(results[1][k], results[0][k], atol=0.02 * moved, err_msg=k)


def test_estimator_amp_is_on_only_while_it_runs():
    est = make_estimator(amp=True)
    seen = []

    class Probe(xpnet.handlers.BatchEnd):
        def batch_end(self, e, *args, **kwargs):
            seen.append((amp.target_dtype(), kwargs['pred'][0].dtype))

    est.fit(make_loader(), batches=2, event_handlers=[Probe()])
    assert seen == [(F16, F16)] * 2
    assert not amp.is_enabled()
    assert est.evaluate(make_loader())            # evaluates under AMP too
    assert not amp.is_enabled()
    amp.init()                                    # the process-wide setting stays on
    est.fit(make_loader(), batches=1)
    assert amp.is_enabled()


def test_amp_off_wrapped_ops_launch_what_the_ops_do():
    import xpnet.ops as ops
    x, w = _x(sim(1), (4, 4)).astype('float16'), _x(sim(1), (3, 4), 1)
    calls = [('exp', (x,)), ('sum', (x,)), ('softmax', (x,)), ('fully_connected', (x, w))]
    for name, args in calls:
        wrapped = getattr(ops, name)
        with sim(1).use(), simulated.counting() as raw:
            expected = wrapped.__wrapped__(*args)
        with simulated.counting() as c:
            got = wrapped(*args)
        assert c.kernels == raw.kernels and got.dtype == expected.dtype, name


# ---- it trains ------------------------------------------------------------------------------

def _digits_accuracy(use_amp, epochs=5):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'examples'))
    from train_digits import build_net, load_digits_split
    xpnet.random.seed(0)
    x_train, y_train, x_val, y_val = load_digits_split(seed=0)
    train = xpnet.data.DataLoader(xpnet.data.ArrayDataset(x_train, y_train), batch_size=32,
                                  shuffle=True)
    val = xpnet.data.DataLoader(xpnet.data.ArrayDataset(x_val, y_val), batch_size=256)
    net = build_net()
    net.initialize(init=xpnet.init.Xavier())
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
    est = xpnet.estimator.Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(),
                                    train_metrics=xpnet.metric.Accuracy(), trainer=trainer,
                                    amp=use_amp)
    est.logger.setLevel(logging.WARNING)
    est.fit(train, epochs=epochs)
    return est.evaluate(val)['validation accuracy'], trainer._amp_loss_scaler


def test_the_digits_mlp_reaches_its_float32_accuracy_under_amp():
    pytest.importorskip('sklearn')
    acc32, _ = _digits_accuracy(False)
    acc16, scaler = _digits_accuracy(True)
    assert acc32 > 0.9
    assert acc16 >= acc32 - 0.01, (acc16, acc32)
    assert scaler.loss_scale < 2.0 ** 16          # it overflowed, skipped and recovered
