"""The CUDA source of every fused kernel, executed on the CPU and checked against the
NumPy stand-ins.

Without a GPU the stand-ins are what the simulated device runs, and the launch ABI is
checked (``test_gpu_kernel_abi.py``), but the CUDA code itself never runs. Here it does:
``tests/cuda_cpu.py`` compiles each family's source as C++ against a small emulation of
CUDA's execution model (``tests/cuda_cpu/xpcuda_cpu.h``: blocks in turn, a block's
threads as fibers with real ``__syncthreads`` barriers, ``__shared__`` memory poisoned at
each block's start), and ``kernel_abi.fake_cupy(execute=True)`` runs every checked launch
on the simulated device's memory, twice (forward and reverse block and thread order: the
results must be bit-identical), then compares what the kernels wrote with what the
stand-ins write. The ABI scenarios (every kernel, both dtypes) run this way, plus shapes
large enough for the multi-block reductions ("last block" combination, several row
blocks, grid-stride loops, rows longer than a block), a sweep of convolution, pooling,
BatchNorm and dropout geometries, and edge sizes (one element, empty, one past a block or
a column block, tensors of 200,000 values).

What only a GPU shows: warp-level and memory-model effects of truly concurrent threads
(``__threadfence`` is a no-op here) and the GPU's floating-point contraction.
"""
import numpy as np
import pytest

import cuda_cpu
import kernel_abi
import test_gpu_kernel_abi as abi
import xpnet
from xpnet import autograd
from xpnet import layers as nn
from xpnet.backend import kernels, sim
from xpnet.backend.kernels import Family

pytestmark = pytest.mark.skipif(not cuda_cpu.available(),
                                reason='needs g++ to run the CUDA source on the CPU')


@pytest.fixture
def executed(monkeypatch):
    with kernel_abi.fake_cupy(monkeypatch, execute=True) as registry:
        yield registry


def test_every_kernel_runs_its_cuda_source_like_its_standin(executed):
    """Every ``extern "C"`` kernel of every family (both dtypes) runs from its CUDA source
    in the ABI scenarios (a CNN with BatchNorm, pooling and dropout trained with every
    optimizer and gradient clipping; LSTM/GRU/RNN steps with ``valid_length`` and
    clipping; label checks and metrics), in agreement with the stand-ins."""
    abi.test_every_kernel_of_every_family_is_launched(executed)


def _wide_net():
    net = nn.HybridSequential()
    net.add(nn.BatchNorm(axis=-1, in_channels=40),
            nn.Dense(8, flatten=False, activation='tanh', in_units=40),
            nn.Dropout(0.25), nn.Flatten(), nn.Dense(300, in_units=16 * 8))
    return net


@pytest.mark.parametrize('dtype', abi.DTYPES)
@pytest.mark.parametrize('opt,params', [('sgd', {'learning_rate': 0.05, 'momentum': 0.9,
                                                 'wd': 1e-3}),
                                        ('adam', {'learning_rate': 0.01})])
def test_multi_block_reductions_run_like_their_standins(executed, dtype, opt, params):
    """Shapes that take the multi-block paths: BatchNorm over 1,024 rows and 40 channels
    (two column blocks, two row blocks combined by the last block), a Dense backward
    over 1,024 rows, softmax cross-entropy over 300 classes (rows longer than a block),
    and parameters of up to 38,400 values (several blocks per tensor in the multi-tensor
    updates and the global norm)."""
    abi.train_two_steps(_wide_net(), dtype, opt, params, abi.rnd(64, 16, 40),
                        np.random.RandomState(0).randint(0, 300, 64), sim(0))
    t = abi._c(dtype)
    assert {('norm', 'bn_stats', t), ('optim', 'sumsq_mt', t), ('softmax', 'sce_forward', t),
            ('elementwise', 'act_bias_grad', t)} <= executed


# ---- the executor catches what it is for -----------------------------------------------------

SUM_SOURCE = r'''
// out[b] = sum of x over block b's slice (one block per slice of blockDim.x values)
extern "C" __global__ void block_sums(const T* x, T* out, int n) {
    __shared__ double shm[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const double s = xp_block_sum(i < n ? (double)x[i] : 0.0, shm);
    if (threadIdx.x == 0) out[blockIdx.x] = (T)s;
}

// out[0] = x[0] + x[1] without a barrier between the write and the read of shm
extern "C" __global__ void racy_pair(const T* x, T* out) {
    __shared__ double shm[2];
    shm[threadIdx.x] = (double)x[threadIdx.x];
    if (threadIdx.x == 0) out[0] = (T)(shm[0] + shm[1]);
}

// only the threads of the first half reach the barrier
extern "C" __global__ void divergent(T* out) {
    if (threadIdx.x < blockDim.x / 2) {
        __syncthreads();
        out[threadIdx.x] = (T)1;
    } else {
        __syncthreads();
        out[threadIdx.x] = (T)2;
    }
}

// reads shared memory no thread wrote
extern "C" __global__ void uninitialised(T* out) {
    __shared__ double shm[32];
    out[threadIdx.x] = (T)shm[threadIdx.x];
}

// y[i] = 1 for i <= n: one past the end
extern "C" __global__ void off_by_one(T* y, int n) {
    if ((int)threadIdx.x <= n) y[threadIdx.x] = (T)1;
}

// y = a - b
extern "C" __global__ void difference(const T* a, const T* b, T* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] - b[i];
}
'''


@pytest.fixture
def family():
    fam = Family('cpu_test', SUM_SOURCE, [{'T': 'double'}])
    kernels._FAMILIES.pop('cpu_test')            # not one of xpnet's families
    return fam


def _dev(a):
    return sim(0).xp.asarray(np.asarray(a, dtype=np.float64))


def test_block_reductions_match_numpy(family):
    with sim(0).use():
        h = np.random.default_rng(0).standard_normal(1000)
        out = _dev(np.zeros(4))
        cuda_cpu.CpuKernel(family, 'block_sums', {'T': 'double'})(
            (4,), (256,), (_dev(h), out, np.int32(1000)))
        want = [h[k * 256:(k + 1) * 256].sum() for k in range(4)]
        np.testing.assert_allclose(out._a, want, rtol=1e-12)


def test_a_missing_barrier_gives_other_bits_in_reverse_order(family):
    k = cuda_cpu.CpuKernel(family, 'racy_pair', {'T': 'double'})
    with sim(0).use():
        x, out = _dev([1.0, 2.0]), _dev([0.0])
        k((1,), (2,), (x, out))
        forward = float(out._a[0])
        k((1,), (2,), (x, out), reverse=True)
    assert np.isnan(forward)                  # thread 1 had not written shm[1]: poison
    assert float(out._a[0]) == 3.0            # in reverse order it had


def test_divergent_barriers_are_reported(family):
    k = cuda_cpu.CpuKernel(family, 'divergent', {'T': 'double'})
    with sim(0).use(), pytest.raises(cuda_cpu.KernelError, match='divergent __syncthreads'):
        k((1,), (8,), (_dev(np.zeros(8)),))


def test_shared_memory_starts_poisoned(family):
    k = cuda_cpu.CpuKernel(family, 'uninitialised', {'T': 'double'})
    with sim(0).use():
        out = _dev(np.zeros(32))
        k((1,), (32,), (out,))
    assert np.isnan(out._a).all()


def test_swapped_arguments_of_one_type_are_caught(family, monkeypatch):
    """The ABI checker cannot see two ``const T*`` arguments swapped; running the kernel
    against its stand-in does."""
    from xpnet.backend.kernels import elementwise

    def difference(xp, a, b, swap):
        y = xp.empty_like(a)

        def cuda():
            family.function(xp, 'difference', T='double')(
                (1,), (32,), ((b, a) if swap else (a, b)) + (y, np.int32(a.size)))
        # the family modules' `run`, as fake_cupy patched it
        elementwise.run(xp, 'cpu_test.difference', cuda, lambda: xp.subtract(a, b, out=y))
        return y

    monkeypatch.setattr(kernel_abi, 'EXTENTS', dict(kernel_abi.EXTENTS, difference={
        'a': 'n', 'b': 'n', 'y': 'n'}))
    with kernel_abi.fake_cupy(monkeypatch, execute=True), sim(0).use():
        a, b = _dev([3.0, 5.0]), _dev([1.0, 1.0])
        assert difference(sim(0).xp, a, b, swap=False)._a.tolist() == [2.0, 4.0]
        with pytest.raises(kernel_abi.ABIError, match='difference.y differently'):
            difference(sim(0).xp, a, b, swap=True)


def test_an_out_of_bounds_store_is_reported(family, monkeypatch):
    from xpnet.backend.kernels import elementwise
    monkeypatch.setattr(kernel_abi, 'EXTENTS', dict(kernel_abi.EXTENTS, off_by_one={'y': 'n'}))
    with kernel_abi.fake_cupy(monkeypatch, execute=True), sim(0).use():
        xp = sim(0).xp
        y = xp.zeros(8, dtype=np.float64)

        def cuda():
            family.function(xp, 'off_by_one', T='double')((1,), (32,), (y, np.int32(8)))
        with pytest.raises(kernel_abi.ABIError, match='wrote after the memory of off_by_one.y'):
            elementwise.run(xp, 'cpu_test.off_by_one', cuda, lambda: y.fill(1))


def test_a_wrong_kernel_result_is_reported(monkeypatch):
    """A sign error in ``bias_act``'s CUDA source (its stand-in unchanged)."""
    from xpnet.backend.kernels import elementwise
    monkeypatch.setattr(elementwise.FAMILY, 'source', elementwise.FAMILY.source.replace(
        'v += bias[k % cols]', 'v -= bias[k % cols]'))
    with kernel_abi.fake_cupy(monkeypatch, execute=True):
        net = nn.Dense(3, in_units=4, activation='relu')
        net.initialize(ctx=sim(0), init='ones')
        net.bias.set_data(xpnet.array(np.array([0.5, -0.25, 1.0]), ctx=sim(0)))
        with pytest.raises(kernel_abi.ABIError, match='bias_act.y differently'):
            with autograd.record():
                net(xpnet.array(np.ones((2, 4)), ctx=sim(0)))


def test_an_order_dependent_reduction_is_reported(monkeypatch):
    """A column total combined in the order blocks finish (not in block order)."""
    monkeypatch.setattr(kernels, 'PREAMBLE', kernels.PREAMBLE.replace(
        '    *t1 = u1;', '    *t1 = u1 + (double)blockIdx.y * 1e-3;'))
    with kernel_abi.fake_cupy(monkeypatch, execute=True):
        bn = nn.BatchNorm(axis=-1, in_channels=3)
        bn.initialize(ctx=sim(0))
        x = xpnet.array(np.random.default_rng(1).standard_normal((2048, 3)), ctx=sim(0))
        with pytest.raises(kernel_abi.ABIError, match='reverse order|differently'):
            with autograd.record():
                bn(x)


CONV_CASES = [  # (layer, input shape, the kernel family it launches)
    (lambda: nn.Conv1D(3, 3, strides=2, padding=1, in_channels=2), (2, 2, 9), 'conv'),
    (lambda: nn.Conv2D(3, (3, 2), strides=(2, 1), padding=(1, 0), dilation=(1, 2),
                       in_channels=2), (2, 2, 7, 6), 'conv'),
    (lambda: nn.Conv2D(4, 1, layout='NHWC', in_channels=3), (2, 5, 5, 3), 'elementwise'),
    (lambda: nn.Conv2D(4, 3, strides=2, padding=2, layout='NHWC', in_channels=3,
                       activation='sigmoid'), (2, 6, 5, 3), 'conv'),
    (lambda: nn.Conv3D(2, (2, 3, 2), strides=(1, 2, 1), padding=(1, 1, 0),
                       in_channels=2), (1, 2, 4, 5, 4), 'conv'),
    (lambda: nn.MaxPool1D(3, strides=2, padding=1), (2, 3, 10), 'pool'),
    (lambda: nn.MaxPool2D((3, 2), strides=(2, 2), padding=(1, 1), ceil_mode=True),
     (2, 3, 7, 6), 'pool'),
    (lambda: nn.MaxPool2D(2, layout='NHWC'), (2, 6, 6, 3), 'pool'),
    (lambda: nn.AvgPool2D(3, strides=2, padding=1, count_include_pad=True), (2, 3, 7, 7), 'pool'),
    (lambda: nn.AvgPool2D(3, strides=2, padding=1, count_include_pad=False,
                          ceil_mode=True), (2, 3, 8, 7), 'pool'),
    (lambda: nn.AvgPool3D(2, strides=1, padding=1), (1, 2, 3, 4, 3), 'pool'),
    (lambda: nn.GlobalAvgPool2D(), (2, 3, 4, 4), None),
    (lambda: nn.BatchNorm(center=False, scale=False, in_channels=3), (4, 3, 5, 5), 'norm'),
    (lambda: nn.BatchNorm(axis=-1, in_channels=33, momentum=0.5), (1100, 33), 'norm'),
    (lambda: nn.Dropout(0.5, axes=(2,)), (2, 3, 5, 4), 'elementwise'),
]


@pytest.mark.parametrize('dtype', abi.DTYPES)
@pytest.mark.parametrize('case', range(len(CONV_CASES)))
def test_layer_geometries_run_like_their_standins(executed, dtype, case):
    """Strides, padding, dilation, ceil mode, both layouts, 1-3 spatial dimensions, pad
    counting, BatchNorm without gamma/beta or over more channels than a column block, and
    dropout along an axis: forward, backward and inference, from the CUDA source."""
    make, shape, family = CONV_CASES[case]
    ctx = sim(0)
    xpnet.random.seed(case)
    layer = make()
    layer.initialize(init='xavier', ctx=ctx)
    layer.cast(dtype)
    x = abi.arr(abi.rnd(*shape, seed=case), ctx, dtype)
    x.attach_grad()
    with autograd.record():
        y = layer(x)
        (y * y).sum().backward()
    assert np.isfinite(x.grad.asnumpy()).all()
    assert np.isfinite(layer(x).asnumpy()).all()                     # inference mode
    assert family is None or any(k[0] == family for k in executed)


# ---- edge sizes: one element, one past a block, a column block and a half, empty ----------

def _launched(executed, family):
    return {k[1] for k in executed if k[0] == family}


def _grad_of(fn, *hosts, dtype=np.float64):
    ctx = sim(0)
    ins = [abi.arr(h, ctx, dtype) for h in hosts]
    for a in ins:
        a.attach_grad()
    with autograd.record():
        out = fn(*ins)
        (out * out).sum().backward()
    assert all(np.isfinite(a.grad.asnumpy()).all() for a in ins)


@pytest.mark.parametrize('rows,cols', [(1, 1), (3, 33), (257, 31), (513, 70), (1030, 2)])
@pytest.mark.parametrize('act', ['relu', 'tanh', 'sigmoid', None])
def test_dense_edge_sizes(executed, rows, cols, act):
    from xpnet import ops
    _grad_of(lambda x, w, b: ops.fully_connected(x, w, b, act=act),
             abi.rnd(rows, 5), abi.rnd(cols, 5), abi.rnd(cols))
    assert _launched(executed, 'elementwise') >= {'bias_act', 'act_bias_grad'}


@pytest.mark.parametrize('m,n', [(0, 3), (1, 1), (2, 257), (3, 600), (300, 2)])
@pytest.mark.parametrize('dtype', abi.DTYPES)
def test_softmax_cross_entropy_edge_sizes(executed, m, n, dtype):
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    labels = np.arange(m) % n
    _grad_of(lambda x: loss_fn(x, xpnet.array(labels, ctx=sim(0))), abi.rnd(m, n),
             dtype=dtype)
    assert 'sce_forward' in _launched(executed, 'softmax')


@pytest.mark.parametrize('r,c', [(1, 1), (2, 32), (511, 33), (1025, 3), (4100, 1)])
def test_batch_norm_edge_sizes(executed, r, c):
    bn = nn.BatchNorm(axis=-1, in_channels=c)
    bn.initialize(ctx=sim(0))
    bn.cast(np.float64)
    _grad_of(bn, abi.rnd(r, c))
    assert _launched(executed, 'norm') == {'bn_stats', 'bn_apply', 'bn_grad_stats',
                                           'bn_input_grad'}


@pytest.mark.parametrize('n,h', [(1, 1), (3, 5), (2, 300)])
@pytest.mark.parametrize('mode,gates', [('lstm', 4), ('gru', 3), ('rnn_relu', 1)])
def test_recurrent_edge_sizes(executed, n, h, mode, gates):
    from xpnet import ops
    T, C = 2, 3
    vl = xpnet.array(np.arange(n) % T + 1, ctx=sim(0))

    def run(x, h0, c0, wi, wh, bi, bh):
        out = ops.rnn_sequence(x, h0, c0 if mode == 'lstm' else None, wi, wh, bi, bh,
                               mode=mode, valid_length=vl)
        return out[0] if isinstance(out, (list, tuple)) else out
    _grad_of(run, abi.rnd(T, n, C), abi.rnd(n, h), abi.rnd(n, h), abi.rnd(gates * h, C) * .3,
             abi.rnd(gates * h, h) * .3, abi.rnd(gates * h), abi.rnd(gates * h))
    kind = mode.split('_')[0]
    assert _launched(executed, 'rnn') == {f'{kind}_fwd', f'{kind}_bwd'}


@pytest.mark.parametrize('sizes', [(1,), (1023, 1025), (3, 200_000)])
@pytest.mark.parametrize('opt', ['sgd', 'nag', 'adam', 'adamw'])
def test_multi_tensor_update_edge_sizes(executed, sizes, opt):
    ctx = sim(0)
    from xpnet.layers import Parameter
    params = [Parameter(f'p{i}', shape=(s,)) for i, s in enumerate(sizes)]
    for p in params:
        p.initialize(ctx=ctx, init='ones')
    hyper = {'learning_rate': 0.1, 'wd': 1e-3}
    if opt in ('sgd', 'nag'):
        hyper['momentum'] = 0.9
    trainer = xpnet.Trainer(params, opt, hyper)
    with autograd.record():
        loss = sum((p.data(ctx) * p.data(ctx)).sum() for p in params)
    loss.backward()
    xpnet.utils.clip_global_norm([p.grad(ctx) for p in params], 1.0, check_isfinite=False)
    trainer.step(1)
    assert all(np.isfinite(p.data(ctx).asnumpy()).all() for p in params)
    assert _launched(executed, 'optim') >= {'sumsq_mt', 'scale_mt'}
    assert _launched(executed, 'optim') & {'sgd_mt', 'nag_mt', 'adam_mt'}


@pytest.mark.parametrize('n', [1, 3, 4, 5, 1023])
@pytest.mark.parametrize('p', [0.0, 0.5, 0.999])
def test_dropout_edge_sizes(executed, n, p):
    layer = nn.Dropout(p)
    _grad_of(lambda x: layer(x), abi.rnd(n))
    assert p == 0 or 'dropout' in _launched(executed, 'elementwise')
