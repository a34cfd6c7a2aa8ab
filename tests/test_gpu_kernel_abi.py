"""The CUDA launch ABI of every fused kernel, checked on the CPU.

Without a GPU the launchers' ``cuda()`` closures never run (the simulated device runs the
NumPy stand-ins). Under the ``fake_cupy`` fixture (``tests/kernel_abi.py``) they do: each
launch goes to a checker that parses the kernel's C signature and verifies the grid, the
block and every argument as CuPy would pass them (exact scalar widths, pointee dtypes,
C-contiguity, the current device, NULL only where the kernel tests for it, the
optimizers' pointer tables), then the stand-in runs so the numbers stay right. One
training scenario per dtype drives every launcher through the public ops, layers,
losses, optimizers, metrics and checks; one test runs them all and asserts that every
``extern "C"`` kernel of every family was launched (both dtypes where the family is typed
by ``T``); the last tests show the checker refuses each kind of bad launch.
"""
import numpy as np
import pytest

import kernel_abi
import xpnet
from xpnet import autograd, ops
from xpnet import layers as nn
from xpnet.backend import sim, to_host

DTYPES = [np.float32, np.float64]

# Kernels no scenario can reach, with the reason (empty: every kernel is covered).
UNREACHABLE = {}


@pytest.fixture
def fake(monkeypatch):
    with kernel_abi.fake_cupy(monkeypatch) as registry:
        yield registry


def rnd(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


def arr(h, ctx, dtype):
    return xpnet.array(np.asarray(h).astype(dtype), ctx=ctx, dtype=dtype)


def _cnn():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, in_channels=2),
            nn.BatchNorm(in_channels=4), nn.Activation('relu'),
            nn.MaxPool2D(2), nn.Conv2D(4, 3, padding=1, layout='NCHW', in_channels=4),
            nn.AvgPool2D(2, strides=1, padding=1, count_include_pad=False),
            nn.Flatten(), nn.Dropout(0.5), nn.Dense(8, activation='tanh'),
            nn.Dropout(0.3, axes=(1,)), nn.Dense(3))
    return net


def _step(net, trainer, x, y, metrics, clip=None):
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        out = net(x)
        loss = loss_fn(out, y)
    loss.backward()
    if clip is not None:
        grads = [p.grad(x.context) for p in net.collect_params().values()
                 if p.grad_req != 'null']
        xpnet.utils.clip_global_norm(grads, clip, check_isfinite=False)
    trainer.step(x.shape[0])
    probs = ops.softmax(out.detach(), axis=-1)
    for m in metrics:
        m.update(y, loss if isinstance(m, xpnet.metric.Loss) else probs)


OPTIMIZERS = [('sgd', {'learning_rate': 0.05, 'momentum': 0.9, 'wd': 1e-3}),
              ('sgd', {'learning_rate': 0.05, 'clip_gradient': 0.5}),
              ('nag', {'learning_rate': 0.05, 'momentum': 0.9}),
              ('adam', {'learning_rate': 0.01, 'wd': 1e-3}),
              ('adamw', {'learning_rate': 0.01, 'wd': 0.1})]


def train_two_steps(net, dtype, opt, params, x, y, ctx):
    """Initialise ``net`` (seeded) in ``dtype`` on ``ctx`` and train it two steps on the
    host arrays ``x``, ``y`` with gradient clipping and three metrics; returns the first
    parameter's value before training and the metrics."""
    xpnet.random.seed(0)
    net.initialize(init='xavier', ctx=ctx)
    net.cast(dtype)
    trainer = xpnet.Trainer(net.collect_params(), opt, params)
    x, y = arr(x, ctx, dtype), arr(y, ctx, dtype)
    metrics = [xpnet.metric.Accuracy(), xpnet.metric.Loss(), xpnet.metric.CrossEntropy()]
    before = next(iter(net.collect_params().values())).data(ctx).asnumpy()
    for _ in range(2):
        _step(net, trainer, x, y, metrics, clip=1.0)
    assert all(np.isfinite(m.get()[1]) for m in metrics)
    return before, metrics


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('opt,params', OPTIMIZERS)
def test_cnn_training_step_launches_with_a_valid_abi(fake, dtype, opt, params):
    ctx = sim(0)
    net = _cnn()
    before, _ = train_two_steps(net, dtype, opt, params, rnd(4, 2, 6, 6), [0, 1, 2, 1], ctx)
    assert not np.array_equal(net.collect_params()['0.weight'].data(ctx).asnumpy(), before)
    assert {k for k in fake if k[0] == 'optim'} >= {('optim', 'sumsq_mt', _c(dtype)),
                                                   ('optim', 'scale_mt', _c(dtype))}


def _c(dtype):
    return 'float' if np.dtype(dtype) == np.float32 else 'double'


@pytest.mark.parametrize('dtype', DTYPES)
def test_recurrent_steps_launch_with_a_valid_abi(fake, dtype):
    ctx = sim(0)
    T, N, C, H = 3, 2, 3, 4
    vl = xpnet.array(np.array([3, 1]), ctx=ctx)
    for mode, ng, clip in (('lstm', 4, (-0.5, 0.5, True)), ('lstm', 4, None),
                           ('gru', 3, None), ('rnn_tanh', 1, None), ('rnn_relu', 1, None)):
        ins = [arr(rnd(T, N, C), ctx, dtype), arr(rnd(N, H), ctx, dtype),
               arr(rnd(N, H), ctx, dtype), arr(rnd(ng * H, C) * 0.5, ctx, dtype),
               arr(rnd(ng * H, H) * 0.5, ctx, dtype), arr(rnd(ng * H), ctx, dtype),
               arr(rnd(ng * H), ctx, dtype)]
        for a in ins:
            a.attach_grad()
        with autograd.record():
            out = ops.rnn_sequence(ins[0], ins[1], ins[2] if mode == 'lstm' else None,
                                   *ins[3:], mode=mode, valid_length=vl, state_clip=clip)
            total = sum((o * o).sum() for o in (out if isinstance(out, (list, tuple))
                                                else [out]) if o is not None)
        total.backward()
        assert np.isfinite(ins[3].grad.asnumpy()).all()


@pytest.mark.parametrize('dtype', DTYPES)
def test_checks_and_metrics_launch_with_a_valid_abi(fake, dtype):
    from xpnet.backend.checks import check_labels, flush_device_checks
    from xpnet.backend.kernels.checks import mark_nonfinite
    ctx = sim(0)
    xp = ctx.xp
    with ctx.use():
        for ldt in (np.float32, np.int32, np.int64, np.uint8):
            check_labels(xp.asarray(np.array([0, 2, 1], ldt)), 3, 'abi')
        check_labels(xp.asarray(np.array([0, -1, 1], np.int32)), 3, 'abi', ignore_label=-1)
        flag = xp.zeros((), dtype=np.int32)
        mark_nonfinite(xp, xp.asarray(np.array([1.0, np.inf], dtype)), flag, 7)
    flush_device_checks()
    assert int(to_host(flag)) == 7
    probs = rnd(5, 4) ** 2 + 0.1
    probs /= probs.sum(axis=1, keepdims=True)
    p = arr(probs, ctx, dtype)
    for ldt in (np.float32, np.int64):
        lab = xpnet.array(np.array([0, 3, 1, 1, 2], ldt), ctx=ctx, dtype=ldt)
        for m in (xpnet.metric.Accuracy(), xpnet.metric.Perplexity(ignore_label=1),
                  xpnet.metric.NegativeLogLikelihood()):
            m.update(lab, p)
            assert np.isfinite(m.get()[1])
    loss = ops.softmax_cross_entropy(p, xpnet.array([0, 3, 1, 1, 2], ctx=ctx),
                                     from_logits=True)
    assert loss.shape == (5,)


def test_dense_layers_without_bias_or_activation(fake):
    ctx = sim(0)
    x = arr(rnd(3, 4), ctx, np.float32)
    w = arr(rnd(5, 4), ctx, np.float32)
    x.attach_grad()
    w.attach_grad()
    with autograd.record():
        y = ops.fully_connected(x, w, None, act='sigmoid')
        z = ops.fully_connected(y, arr(rnd(2, 5), ctx, np.float32), None)
    z.backward()
    assert np.isfinite(w.grad.asnumpy()).all()


def test_an_empty_batch_launches_a_valid_grid(fake):
    """Softmax cross-entropy of zero rows launched a grid of 0 blocks (invalid on CUDA)."""
    p = xpnet.array(np.zeros((0, 4)), ctx=sim(0))
    p.attach_grad()
    with autograd.record():
        loss = ops.softmax_cross_entropy(p, xpnet.array(np.zeros(0), ctx=sim(0)))
    loss.backward()
    assert loss.shape == (0,) and p.grad.shape == (0, 4)
    assert ('softmax', 'sce_forward', 'float') in fake


@pytest.mark.parametrize('flag_dtype', [np.bool_, np.int64, np.uint8])
@pytest.mark.parametrize('value', [0, 1])
def test_skip_flags_of_any_integer_dtype_reach_the_kernels_as_int(fake, flag_dtype, value):
    """The multi-tensor kernels read ``const int* skip``: a bool or int64 flag given to
    ``set_skip_flag`` is converted (it used to be passed as is, read as 4 bytes)."""
    ctx = sim(0)
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1,
                                                           'momentum': 0.9})
    with ctx.use():
        trainer.optimizer.set_skip_flag(ctx.xp.full((), value, dtype=flag_dtype))
    before = net.weight.data(ctx).asnumpy()
    with autograd.record():
        loss = net(xpnet.array(np.ones((2, 3)), ctx=ctx)).sum()
    loss.backward()
    trainer.step(2)
    assert np.array_equal(net.weight.data(ctx).asnumpy(), before) == bool(value)
    assert ('optim', 'sgd_mt', 'float') in fake


@pytest.mark.parametrize('key', [2 ** 64 + 5, -3])
def test_dropout_keys_are_taken_modulo_2_64_on_both_paths(fake, key):
    """A restored device stream key outside uint64 made ``np.uint64(key)`` raise in the
    CUDA launch only (the stand-in takes the low 64 bits)."""
    from xpnet.backend.kernels.elementwise import dropout_mask
    xp = sim(0).xp
    with sim(0).use():
        got = dropout_mask(xp, (3, 5), np.float32, 0.5, key, 2 ** 64 + 1)
        want = dropout_mask(xp, (3, 5), np.float32, 0.5, key % 2 ** 64, 1)
    np.testing.assert_array_equal(to_host(got), to_host(want))
    assert ('elementwise', 'dropout', 'float') in fake


def _all_scenarios(registry):
    for dtype in DTYPES:
        for opt, params in OPTIMIZERS:
            test_cnn_training_step_launches_with_a_valid_abi(registry, dtype, opt, params)
        test_recurrent_steps_launch_with_a_valid_abi(registry, dtype)
        test_checks_and_metrics_launch_with_a_valid_abi(registry, dtype)
    test_dense_layers_without_bias_or_activation(registry)


def test_every_kernel_of_every_family_is_launched(fake):
    """The scenarios above launch every kernel of every family, in both dtypes for the
    families typed by ``T`` (except those of :data:`UNREACHABLE`)."""
    _all_scenarios(fake)
    want = set()
    for fam, kernel in kernel_abi.all_kernels():
        if (fam, kernel) in UNREACHABLE:
            continue
        types = {v.get('T') for v in kernel_abi.kernels.families()[fam].variants}
        want |= {(fam, kernel, t) for t in types}
    missing = sorted(want - fake, key=str)
    assert not missing, f'kernels never launched under fake_cupy: {missing}'


# ---- the checker itself catches each kind of launch bug ----------------------------------------

def _bias_act_launch():
    from xpnet.backend.kernels import elementwise
    return kernel_abi.Launch(elementwise.FAMILY, 'bias_act', {'T': 'float'}, set(), {})


def _good_args(xp):
    y = xp.zeros((4, 3), dtype=np.float32)
    b = xp.zeros(3, dtype=np.float32)
    return [y, b, np.int64(4), np.int32(3), np.int32(1)]


BAD_LAUNCHES = {
    'python int for int': ((1,), (256,), {4: 1}, 'CuPy passes it as int64'),
    'int64 for int': ((1,), (256,), {3: np.int64(3)}, 'got int64'),
    'float64 array for T=float': ((1,), (256,), {1: 'f8'}, 'float64 array'),
    'non-contiguous array': ((1,), (256,), {0: 'T'}, 'non-C-contiguous'),
    'NULL where not tested': ((1,), (256,), {0: None}, 'does not test for NULL'),
    'device array as scalar': ((1,), (256,), {2: 'dev'}, 'device array'),
    'too few arguments': ((1,), (256,), {'drop': 4}, '4 arguments for 5'),
    'array smaller than indexed': ((1,), (256,), {1: 'short'}, 'indexes cols = 3'),
    'grid of a float': ((1.0,), (256,), {}, 'must be an int'),
    'empty grid': ((0,), (256,), {}, 'outside'),
    'grid as a list': ([1], (256,), {}, 'tuple'),
    'block over 1024 threads': ((1,), (64, 32), {}, 'more than 1024'),
}


@pytest.mark.parametrize('case', sorted(BAD_LAUNCHES))
def test_the_checker_refuses_bad_launches(case):
    grid, block, change, match = BAD_LAUNCHES[case]
    xp = sim(0).xp
    with sim(0).use():
        args = _good_args(xp)
        launch = _bias_act_launch()
        launch((1,), (256,), tuple(args))                # the good launch passes
        for k, v in change.items():
            if k == 'drop':
                args = args[:v]
            elif v == 'f8':
                args[k] = args[k].astype(np.float64)
            elif v == 'T':
                args[k] = xp.zeros((3, 4), dtype=np.float32).T
            elif v == 'short':
                args[k] = xp.zeros(2, dtype=np.float32)
            elif v == 'dev':
                args[k] = xp.zeros((), dtype=np.int64)
            else:
                args[k] = v
        with pytest.raises(kernel_abi.ABIError, match=match):
            launch(grid, block, tuple(args))


def test_the_checker_refuses_arrays_of_another_device():
    with sim(1).use():
        y = sim(1).xp.zeros((4, 3), dtype=np.float32)
    with sim(0).use():
        args = _good_args(sim(0).xp)
        args[0] = y
        with pytest.raises(kernel_abi.ABIError, match='not the current device'):
            _bias_act_launch()((1,), (256,), tuple(args))


def test_signatures_resolve_typedefs_and_macros():
    from xpnet.backend.kernels import pool, rnn
    params, _ = kernel_abi.signatures(pool.FAMILY.code(T='double'))['max_pool']
    assert [repr(p) for p in params[:4]] == ['double* x', 'double* y', 'int* arg',
                                             'long long sN']
    assert [p.name for p in params[-3:]] == ['pd', 'ph', 'pw']        # from XP_POOL_ARGS
    params, body = kernel_abi.signatures(rnn.FAMILY.code(T='float'))['lstm_fwd']
    assert repr(params[8]) == 'bool* clipped' and '!vl' in body      # XP_VALID's body
