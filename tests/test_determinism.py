"""The same seed gives bit-identical parameters, whatever the timing.

Every model family is trained twice from the same seed -- once alone, once while another
thread keeps xpnet's thread pool, background jobs and the BLAS busy -- with the host pool
forced to split everything over 2 or 3 threads (``forced_pool``), and the parameters must
be equal bit for bit. Two training loops in two Python threads must each give the numbers
they give alone, and a conv net killed mid-epoch (``os._exit``) and resumed in a fresh
process must end with the parameters of the uninterrupted run.
"""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn
from xpnet.backend import hostpool
from xpnet.layers import rnn
from xpnet.ops import conv as conv_ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _force_splits(target):
    """Every split, long-reduction slab and background job taken (set on ``target``, a
    monkeypatch or a plain setter)."""
    target.setattr(hostpool, 'SPLIT_BYTES', 0)
    target.setattr(hostpool, 'SPLIT_MNK', 0)
    target.setattr(hostpool, 'K_SLAB_MIN', 4)
    target.setattr(conv_ops, 'BACKGROUND_MIN_MACS', 0)


@pytest.fixture(params=[2, 3], ids=['2threads', '3threads'])
def forced_pool(request, monkeypatch):
    previous = hostpool.set_host_threads(request.param)
    _force_splits(monkeypatch)
    yield request.param
    hostpool.set_host_threads(previous)
    assert hostpool.jobs_running() == 0


class Competitor:
    """A thread keeping the pool, background jobs and the BLAS busy until stopped."""

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        a = np.random.default_rng(1).standard_normal((96, 96)).astype(np.float32)
        out = np.empty_like(a)
        while not self._stop.is_set():
            hostpool.run_parts(lambda lo, hi: np.matmul(a[lo:hi], a, out=out[lo:hi]), 96)
            hostpool.threaded_matmul(a, a)
            hostpool.resolve(hostpool.defer(lambda: hostpool.matmul(a.T, a)))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        return False


# ---- model families ------------------------------------------------------------------------

def _cnn():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),  # unfold
            nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),  # Winograd
            nn.MaxPool2D(2), nn.Conv2D(8, 3, strides=2),                         # im2col
            nn.GlobalAvgPool2D(), nn.Dense(10))
    return net, (8, 3, 16, 16), 'image'


def _deconv():
    net = nn.HybridSequential()
    net.add(nn.Conv2DTranspose(16, 4, strides=2, padding=1), nn.Activation('relu'),
            nn.Conv2DTranspose(8, 3, padding=1), nn.GlobalAvgPool2D(), nn.Dense(10))
    return net, (8, 16, 8, 8), 'image'


def _deformable(modulated):
    cls = nn.ModulatedDeformableConvolution if modulated else nn.DeformableConvolution
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1),
            cls(8, (3, 3), padding=(1, 1), offset_weight_initializer=xpnet.init.Normal(0.1)),
            nn.GlobalAvgPool2D(), nn.Dense(10))
    return net, (8, 3, 10, 10), 'image'


class _SequenceNet(nn.HybridBlock):
    def __init__(self, layer):
        super().__init__()
        self.emb = nn.Embedding(40, 32)
        self.rnn = layer
        self.out = nn.Dense(10, flatten=False)

    def forward(self, x):                       # x (T, N) tokens
        return self.out(self.rnn(self.emb(x)))[-1]


class _ConvCellNet(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.cell = rnn.Conv2DLSTMCell(input_shape=(3, 8, 8), hidden_channels=8,
                                       i2h_kernel=3, h2h_kernel=3, i2h_pad=1)
        self.out = nn.Dense(10)

    def forward(self, x):                       # x (N, T, C, H, W)
        out, _ = self.cell.unroll(x.shape[1], x, layout='NTC', merge_outputs=False)
        return self.out(out[-1])


def _embedding(sparse):
    net = nn.HybridSequential()
    net.add(nn.Embedding(40, 16, sparse_grad=sparse), nn.Flatten(), nn.Dense(10))
    return net, (16, 8), 'tokens'


FAMILIES = {
    'cnn': _cnn,
    'conv2d_transpose': _deconv,
    'deformable_v1': lambda: _deformable(False),
    'deformable_v2': lambda: _deformable(True),
    'lstm': lambda: (_SequenceNet(rnn.LSTM(48, num_layers=2, bidirectional=True)), (6, 16),
                     'sequence'),
    'gru': lambda: (_SequenceNet(rnn.GRU(48)), (6, 16), 'sequence'),
    'conv_lstm_cell': lambda: (_ConvCellNet(), (4, 3, 3, 8, 8), 'image'),
    'embedding': lambda: _embedding(False),
    'embedding_sparse_grad': lambda: _embedding(True),
}

OPTIMIZERS = {
    'sgd_momentum': ('sgd', {'learning_rate': 0.1, 'momentum': 0.9}),
    'nag': ('nag', {'learning_rate': 0.1, 'momentum': 0.9}),
    'adam': ('adam', {'learning_rate': 0.01}),
    'adamw': ('adamw', {'learning_rate': 0.01, 'wd': 0.01}),
    'rmsprop': ('rmsprop', {'learning_rate': 0.01}),
    'adagrad': ('adagrad', {'learning_rate': 0.1}),
    'adadelta': ('adadelta', {}),
}


def prepare(family, seed=0, steps=3):
    """The family's net (initialized, from ``seed``) and its batches: everything that draws
    random numbers happens here, so the training loop itself may run in any thread."""
    xpnet.random.seed(seed)
    net, shape, kind = FAMILIES[family]()
    net.initialize(init=xpnet.init.Xavier())
    rng = np.random.default_rng(seed)
    batch = shape[1] if kind == 'sequence' else shape[0]
    batches = []
    for _ in range(steps):
        if kind == 'image':
            x = nd.array(rng.standard_normal(shape).astype(np.float32))
        else:
            x = nd.array(rng.integers(0, 40, shape), dtype='int64')
        batches.append((x, nd.array(rng.integers(0, 10, batch))))
    with autograd.pause():
        net(batches[0][0])                      # deferred initialization, here
    return net, batches


def fit(net, batches, optimizer='sgd', opt_params=None):
    """Train on ``batches``; returns the parameters as host arrays."""
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    if opt_params is None:
        opt_params = {'learning_rate': 0.1, 'momentum': 0.9}
    trainer = xpnet.Trainer(net.collect_params(), optimizer, dict(opt_params))
    for x, y in batches:
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


def train(family, optimizer='sgd', opt_params=None):
    net, batches = prepare(family)
    return fit(net, batches, optimizer, opt_params)


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---- the tests -------------------------------------------------------------------------------

@pytest.mark.parametrize('family', list(FAMILIES))
def test_same_seed_gives_identical_parameters(family, forced_pool):
    alone = train(family)
    with Competitor():
        busy = train(family)
    assert_identical(alone, busy)


@pytest.mark.parametrize('name', list(OPTIMIZERS))
def test_every_optimizer_is_deterministic(name, forced_pool):
    optimizer, params = OPTIMIZERS[name]
    alone = train('cnn', optimizer, params)
    with Competitor():
        busy = train('cnn', optimizer, params)
    assert_identical(alone, busy)


def test_two_training_loops_in_two_threads_each_give_their_own_numbers(forced_pool):
    alone = {f: train(f) for f in ('cnn', 'lstm')}
    prepared = {f: prepare(f) for f in alone}        # random draws in this thread only
    results, errors = {}, []

    def loop(family):
        try:
            results[family] = fit(*prepared[family])
        except BaseException as err:                 # surfaced below
            errors.append(err)
    threads = [threading.Thread(target=loop, args=(f,)) for f in alone]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for f in alone:
        assert_identical(alone[f], results[f])


_RESUME_SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np
    import xpnet
    from xpnet import layers as nn
    from xpnet.backend import hostpool
    from xpnet.data import ArrayDataset, DataLoader
    from xpnet.estimator import Estimator
    from xpnet.handlers import BatchEnd, CheckpointHandler
    from xpnet.ops import conv as conv_ops

    model_dir, kill_at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hostpool.SPLIT_BYTES = hostpool.SPLIT_MNK = conv_ops.BACKGROUND_MIN_MACS = 0
    hostpool.K_SLAB_MIN = 4

    class Kill(BatchEnd):
        seen = 0

        def batch_end(self, est, *args, **kwargs):
            Kill.seen += 1
            if Kill.seen == kill_at:
                os._exit(3)            # no train_end, no cleanup: like a power cut

    xpnet.random.seed(5)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((36, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 4, 36).astype(np.float32)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(2), nn.Flatten(), nn.Dense(4))
    net.initialize(init='xavier')
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    handlers = [Kill()]
    if model_dir != '-':
        handlers.append(CheckpointHandler(model_dir, epoch_period=None, batch_period=2,
                                          resume_from_checkpoint=True))
    loader = DataLoader(ArrayDataset(x, y), batch_size=6, shuffle=True)
    est.fit(loader, epochs=2, event_handlers=handlers)
    np.savez(out, **{k: p.data().asnumpy() for k, p in net.collect_params().items()})
    print('batches trained here:', Kill.seen)
''')


def test_conv_net_killed_mid_epoch_resumes_exactly(tmp_path):
    script = tmp_path / 'train.py'
    script.write_text(_RESUME_SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO, XPNET_HOST_THREADS='2')

    def run(model_dir, kill_at, out):
        return subprocess.run([sys.executable, str(script), model_dir, str(kill_at), str(out)],
                              capture_output=True, text=True, timeout=120, env=env)
    ref = run('-', 0, tmp_path / 'ref.npz')
    assert ref.returncode == 0, ref.stderr
    model_dir = str(tmp_path / 'ckpt')
    killed = run(model_dir, 9, tmp_path / 'never.npz')      # batch 3 of epoch 2 (6 a epoch)
    assert killed.returncode == 3, killed.stderr
    assert not (tmp_path / 'never.npz').exists()
    resumed = run(model_dir, 0, tmp_path / 'resumed.npz')
    assert resumed.returncode == 0, resumed.stderr
    trained = int(resumed.stdout.split('batches trained here:')[1])
    assert 0 < trained < 12                  # resumed mid-run, not started afresh
    with np.load(tmp_path / 'ref.npz') as a, np.load(tmp_path / 'resumed.npz') as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
