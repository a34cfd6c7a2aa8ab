"""Blocks and Parameters: registration, structural names, deferred init, multi-context
replicas, selection, sharing, save/load (incl. bad files), cast, zero_grad, summary,
hybridize, Gluon-1 style blocks."""
import os
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn


class MLP(nn.Block):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Dense(8, activation='relu')
        self.out = nn.Dense(3)

    def forward(self, x):
        return self.out(self.hidden(x))


def make_net():
    net = nn.Sequential()
    feats = nn.Sequential()
    feats.add(nn.Dense(6, activation='tanh'), nn.BatchNorm(), nn.Dense(4))
    net.add(feats, nn.Dense(2))
    return net


def test_structural_names():
    net = make_net()
    assert list(net.collect_params()) == [
        '0.0.weight', '0.0.bias', '0.1.gamma', '0.1.beta', '0.1.running_mean',
        '0.1.running_var', '0.2.weight', '0.2.bias', '1.weight', '1.bias']
    assert list(MLP().collect_params()) == ['hidden.weight', 'hidden.bias', 'out.weight',
                                            'out.bias']
    assert list(nn.Dense(3).collect_params()) == ['weight', 'bias']
    sel = net.collect_params('.*weight')
    assert list(sel) == ['0.0.weight', '0.2.weight', '1.weight']
    assert list(net.collect_params('0.1.*|1.bias')) == [
        '0.1.gamma', '0.1.beta', '0.1.running_mean', '0.1.running_var', '1.bias']


def test_deferred_init_and_errors(ctx):
    net = MLP()
    with pytest.raises(RuntimeError, match='initialize'):
        net(nd.ones((2, 5), ctx=ctx))
    net.initialize(ctx=ctx)
    with pytest.raises(xpnet.layers.DeferredInitializationError):
        net.hidden.weight.data()
    out = net(nd.ones((2, 5), ctx=ctx))
    assert out.shape == (2, 3) and net.hidden.weight.shape == (8, 5)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        net.initialize(ctx=ctx)
    assert any('already initialized' in str(x.message) for x in w)
    with pytest.raises(ValueError):
        nn.Parameter('w', shape=(3, 0)).initialize()


def test_initializers_and_precedence():
    d = nn.Dense(4, in_units=3, weight_initializer='ones', bias_initializer=xpnet.init.Constant(2))
    d.initialize(init='xavier')
    assert (d.weight.data().asnumpy() == 1).all() and (d.bias.data().asnumpy() == 2).all()
    d2 = nn.Dense(50, in_units=40)
    d2.initialize(init=xpnet.init.Xavier(magnitude=3))
    lim = np.sqrt(3 / 45)
    w = d2.weight.data().asnumpy()
    assert w.min() >= -lim and w.max() <= lim and w.std() > lim / 3
    assert (d2.bias.data().asnumpy() == 0).all()
    d3 = nn.Dense(4, in_units=3)
    d3.initialize()  # Gluon default: Uniform(0.07)
    assert np.abs(d3.weight.data().asnumpy()).max() <= 0.07
    xpnet.random.seed(5)
    a = nn.Dense(4, in_units=3)
    a.initialize()
    xpnet.random.seed(5)
    b = nn.Dense(4, in_units=3)
    b.initialize()
    np.testing.assert_array_equal(a.weight.data().asnumpy(), b.weight.data().asnumpy())


def test_named_initializers():
    from xpnet import init
    arr = np.zeros((8, 6))
    for name in ['zeros', 'ones', 'uniform', 'normal', 'xavier', 'msraprelu', 'orthogonal',
                 'lstmbias', 'bilinear']:
        init.create(name)(init.InitDesc('w', {'__explicit__': True}), arr)
    q = init.Orthogonal(scale=1.0).init_array('w', (4, 6), explicit=True)
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-5)
    b = init.LSTMBias(2.0).init_array('b', (8,), explicit=True)
    assert b.tolist() == [0, 0, 2, 2, 0, 0, 0, 0]
    with pytest.raises(ValueError, match='unknown initializer'):
        init.create('nope')


def test_multi_context_replicas(ctx_list):
    ctxs = ctx_list
    net = MLP()
    net.initialize(ctx=ctxs)
    x = nd.ones((2, 5), ctx=ctxs[0])
    net(x)
    w = net.hidden.weight
    assert w.list_ctx() == ctxs and len(w.list_data()) == 2
    np.testing.assert_array_equal(w.data(ctxs[0]).asnumpy(), w.data(ctxs[1]).asnumpy())
    y1 = net(x.as_in_context(ctxs[1]))
    assert y1.context == ctxs[1]
    with pytest.raises(RuntimeError, match='not initialized on'):
        w.data(xpnet.Context(ctxs[0].device_type, 2))


def test_share_parameters(ctx):
    a, b = MLP(), MLP()
    a.initialize(ctx=ctx)
    a(nd.ones((1, 5), ctx=ctx))
    b.share_parameters(a.collect_params())
    assert b.hidden.weight is a.hidden.weight
    np.testing.assert_array_equal(a(nd.ones((1, 5), ctx=ctx)).asnumpy(),
                                  b(nd.ones((1, 5), ctx=ctx)).asnumpy())
    # Gluon 1.x style: params=other.collect_params()
    c = nn.Dense(8, params=a.hidden.collect_params())
    assert c.weight is a.hidden.weight


def test_save_load_roundtrip(tmp_path, ctx):
    net = make_net()
    net.initialize(ctx=ctx)
    x = nd.random.uniform(shape=(3, 5), ctx=ctx)
    with autograd.record():
        net(x)   # also updates BatchNorm running statistics
    y = net(x).asnumpy()
    path = str(tmp_path / 'net.params')
    net.save_parameters(path)
    assert os.listdir(tmp_path) == ['net.params']   # no temporary file left behind
    net2 = make_net()
    net2.load_parameters(path, ctx=ctx)   # deferred shapes come from the file
    np.testing.assert_array_equal(net2(x).asnumpy(), y)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(net.collect_params())


def test_load_errors_name_the_parameters(tmp_path):
    net = MLP()
    net.initialize()
    net(nd.ones((1, 5)))
    path = str(tmp_path / 'mlp.params')
    net.save_parameters(path)
    other = nn.Sequential()
    other.add(nn.Dense(8))
    with pytest.raises(ValueError, match='0.weight'):
        other.load_parameters(path)
    with pytest.raises(ValueError, match='hidden.weight'):
        other.load_parameters(path, allow_missing=True)      # extra names in the file
    other.load_parameters(path, allow_missing=True, ignore_extra=True)
    wrong = MLP()
    wrong.hidden = nn.Dense(8, in_units=4)
    wrong.initialize()
    with pytest.raises(ValueError, match=r'hidden.weight.*\(8, 4\).*\(8, 5\)'):
        wrong.load_parameters(path)
    with pytest.raises(FileNotFoundError):
        net.load_parameters(str(tmp_path / 'missing.params'))


def test_corrupt_parameter_file(tmp_path):
    net = MLP()
    net.initialize()
    net(nd.ones((1, 5)))
    path = tmp_path / 'mlp.params'
    net.save_parameters(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(nn.ParameterFileError, match='truncated'):
        net.load_parameters(str(path))
    path.write_bytes(b'not a zip file at all')
    with pytest.raises(nn.ParameterFileError):
        net.load_parameters(str(path))
    # A pickled object array is refused, never unpickled.
    np.savez(str(tmp_path / 'evil.npz'), **{'hidden.weight': np.array([object()], dtype=object)})
    with pytest.raises(nn.ParameterFileError):
        net.load_parameters(str(tmp_path / 'evil.npz'))


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    net = MLP()
    net.initialize()
    net(nd.ones((1, 5)))
    path = str(tmp_path / 'mlp.params')
    net.save_parameters(path)
    before = open(path, 'rb').read()

    def boom(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr(np, 'savez', boom)
    with pytest.raises(OSError):
        net.save_parameters(path)
    assert open(path, 'rb').read() == before
    assert os.listdir(tmp_path) == ['mlp.params']


def test_cast_zero_grad_and_grad_req(ctx):
    net = MLP()
    net.initialize(ctx=ctx)
    x = nd.ones((2, 5), ctx=ctx)
    with autograd.record():
        net(x).sum().backward()
    assert np.abs(net.out.weight.grad(ctx).asnumpy()).sum() > 0
    net.zero_grad()
    assert np.abs(net.out.weight.grad(ctx).asnumpy()).sum() == 0
    net.cast('float64')
    assert net(x.astype('float64')).dtype == np.float64
    net.collect_params().setattr('grad_req', 'null')
    with pytest.raises(RuntimeError, match='null'):
        net.out.weight.grad()


def test_summary_table(capsys):
    net = make_net()
    net.initialize()
    net.summary(nd.ones((2, 5)))
    out = capsys.readouterr().out
    assert 'Output Shape' in out and '(2, 2)' in out and 'Dense' in out
    n = 5 * 6 + 6 + 4 * 6 + 6 * 4 + 4 + 4 * 2 + 2
    assert f'Total params: {n:,}' in out
    assert 'Non-trainable params: 12' in out


def test_hybridize_is_accepted_and_documented():
    net = make_net()
    net.initialize()
    x = nd.ones((2, 5))
    y = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_array_equal(net(x).asnumpy(), y)
    assert 'imperatively' in nn.Block.hybridize.__doc__


def test_gluon1_style_hybrid_forward(ctx):
    class Scale(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.dense = nn.Dense(3, in_units=2)
                self.scale = self.params.get('scale', shape=(3,), init='ones')

        def hybrid_forward(self, F, x, scale):
            return F.broadcast_mul(F.relu(self.dense(x)), scale)

    blk = Scale()
    blk.initialize(ctx=ctx)
    assert sorted(blk.collect_params()) == ['dense.bias', 'dense.weight', 'scale']
    blk.scale.set_data(nd.array([1., 2., 3.]))
    x = nd.ones((4, 2), ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = blk(x)
    y.backward()
    assert y.shape == (4, 3)
    assert blk.scale.grad(ctx).shape == (3,)


def test_forward_hooks():
    d = nn.Dense(2, in_units=3)
    d.initialize()
    seen = []
    h = d.register_forward_hook(lambda blk, args, out: seen.append(out.shape))
    d(nd.ones((4, 3)))
    h.detach()
    d(nd.ones((4, 3)))
    assert seen == [(4, 2)]


def test_constant_parameter(ctx):
    class AddConst(nn.Block):
        def __init__(self):
            super().__init__()
            self.c = nn.Constant(np.array([1., 2.]))

        def forward(self, x):
            return x + self.c.data(x.context)

    blk = AddConst()
    blk.initialize(ctx=ctx)
    x = nd.zeros((2,), ctx=ctx)
    assert blk(x).asnumpy().tolist() == [1, 2]
    assert blk.c.grad_req == 'null'


def test_loads_gluon1_mxnet_params_file(ctx, tmp_path):
    """A Gluon 1.x ``save_parameters`` file (MXNet's binary format) loads by name."""
    here = os.path.join(os.path.dirname(__file__), 'data')
    ref = np.load(os.path.join(here, 'mxnet_mlp_ref.npz'))
    net = nn.HybridSequential()
    net.add(nn.Dense(5, activation='relu'), nn.BatchNorm(), nn.Dense(3))
    net.load_parameters(os.path.join(here, 'mxnet_mlp.params'), ctx=ctx)
    y = net(xpnet.array(ref['x'], ctx=ctx))
    np.testing.assert_allclose(y.asnumpy(), ref['y'], rtol=1e-5, atol=1e-6)
    data = open(os.path.join(here, 'mxnet_mlp.params'), 'rb').read()
    bad = tmp_path / 'cut.params'
    bad.write_bytes(data[:100])
    with pytest.raises(nn.ParameterFileError, match='truncated'):
        net.load_parameters(str(bad))


def test_deepcopied_net_trains_independently(ctx):
    import copy
    net = MLP()
    net.initialize(ctx=ctx)
    x = nd.ones((2, 5), ctx=ctx)
    net(x)
    twin = copy.deepcopy(net)
    trainer = xpnet.Trainer(twin.collect_params(), 'sgd', {'learning_rate': 1.0})
    with autograd.record():
        twin(x).sum().backward()
    trainer.step(1)
    assert twin.out.weight.data(ctx).context == ctx
    assert not np.allclose(twin.out.weight.data(ctx).asnumpy(), net.out.weight.data(ctx).asnumpy())
