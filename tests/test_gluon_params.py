"""Gluon 1.x parameters: standalone ParameterDict, ``params=`` sharing (Siamese nets, tied
embedding/output weights), ``prefix=`` and ``name_scope()`` naming, legacy ``save_params``
files."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd, gluon, nd
from xpnet.gluon import nn


def test_standalone_parameter_dict(tmp_path, ctx):
    params = gluon.ParameterDict('net_')
    w = params.get('weight', shape=(2, 3), init='ones')
    assert w.name == 'net_weight' and list(params) == ['net_weight']
    assert params.get('weight') is w and params.prefix == 'net_'
    assert params.get('weight', shape=(2, 0)) is w            # 0 matches any size
    with pytest.raises(ValueError, match='shape'):
        params.get('weight', shape=(3, 3))
    b = params.get('bias', shape=(0,), allow_deferred_init=True)
    b.shape = (2,)
    shared = gluon.ParameterDict('net_', shared=params)
    assert shared.get('weight') is w
    other = gluon.ParameterDict('other_')
    other.get('scale', shape=(1,))
    params.update(other)
    assert list(params) == ['net_weight', 'net_bias', 'other_scale']
    with pytest.raises(ValueError, match='different Parameter'):
        params.update({'net_weight': gluon.Parameter('x', shape=(1,))})
    params.initialize(ctx=ctx)
    assert (w.data(ctx).asnumpy() == 1).all() and params.list_ctx() == [ctx]
    params.setattr('lr_mult', 0.5)
    assert all(p.lr_mult == 0.5 for p in params.values())
    path = str(tmp_path / 'p.params')
    params.save(path, strip_prefix='')
    fresh = gluon.ParameterDict('net_')
    fresh.get('weight', shape=(2, 3))
    fresh.get('bias', shape=(2,))
    fresh.get('scale', shape=(1,))
    with pytest.raises(ValueError, match='net_scale'):
        fresh.load(path, ctx=ctx)
    with pytest.raises(ValueError, match='other_scale'):
        fresh.load(path, ctx=ctx, allow_missing=True)
    fresh.load(path, ctx=ctx, allow_missing=True, ignore_extra=True)
    np.testing.assert_array_equal(fresh['net_weight'].data(ctx).asnumpy(), 1)
    x = gluon.ParameterDict('x_')
    x.get('w', shape=(2,)).initialize(ctx=ctx)
    x.zero_grad()
    x.reset_ctx(xpnet.cpu(1))
    assert x['x_w'].list_ctx() == [xpnet.cpu(1)]
    with pytest.raises(KeyError, match='constant'):
        x.get_constant('c')
    c = x.get_constant('c', [1., 2.])
    assert x.get_constant('c') is c and c.grad_req == 'null'


class Siamese(nn.Block):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.encoder = nn.HybridSequential()
            with self.encoder.name_scope():
                self.encoder.add(nn.Dense(6, activation='tanh'), nn.Dense(3))

    def forward(self, x):
        return self.encoder(x)


def test_params_sharing_makes_one_parameter(ctx):
    a = Siamese()
    b = Siamese(params=a.collect_params())
    for (ka, pa), (kb, pb) in zip(a.collect_params().items(), b.collect_params().items()):
        assert ka == kb and pa is pb
    b.initialize(ctx=ctx)                          # initializing either initializes both
    x = nd.array(np.random.randn(4, 5), ctx=ctx)
    np.testing.assert_array_equal(a(x).asnumpy(), b(x).asnumpy())
    assert b.prefix != a.prefix and b.encoder.prefix.startswith(b.prefix)


def test_siamese_training_updates_the_shared_weight_once_with_the_summed_gradient(ctx):
    a = Siamese()
    b = Siamese(params=a.collect_params())
    a.initialize(ctx=ctx)
    params = {**{f'a.{k}': v for k, v in a.collect_params().items()},
              **{f'b.{k}': v for k, v in b.collect_params().items()}}
    trainer = gluon.Trainer(params, 'sgd', {'learning_rate': 0.5})
    x1 = nd.array(np.random.randn(4, 5), ctx=ctx)
    x2 = nd.array(np.random.randn(4, 5), ctx=ctx)
    w = a.encoder[0].weight
    with autograd.record():
        l1 = a(x1).sum()
    l1.backward()
    g1 = w.grad(ctx).asnumpy().copy()
    with autograd.record():
        l2 = b(x2).sum()
    l2.backward()
    g2 = w.grad(ctx).asnumpy().copy()
    with autograd.record():
        loss = (a(x1) + b(x2)).sum()
    loss.backward()
    np.testing.assert_allclose(w.grad(ctx).asnumpy(), g1 + g2, rtol=1e-5, atol=1e-6)
    w0 = w.data(ctx).asnumpy().copy()
    trainer.step(1)
    np.testing.assert_allclose(w.data(ctx).asnumpy(), w0 - 0.5 * (g1 + g2), rtol=1e-5,
                               atol=1e-6)


class TiedLM(gluon.Block):
    """Gluon's word_language_model with ``tie_weights=True``."""

    def __init__(self, vocab, hidden, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.encoder = nn.Embedding(vocab, hidden)
            self.rnn = gluon.rnn.LSTM(hidden, input_size=hidden)
            self.decoder = nn.Dense(vocab, in_units=hidden, params=self.encoder.params)

    def forward(self, x):
        out = self.rnn(self.encoder(x))
        return self.decoder(out.reshape((-1, out.shape[-1])))


def test_tied_embedding_and_output_weight(ctx):
    lm = TiedLM(7, 4)
    assert lm.decoder.weight is lm.encoder.weight
    lm.initialize(ctx=ctx)
    trainer = gluon.Trainer(lm.collect_params(), 'sgd', {'learning_rate': 0.1})
    assert sum(p is lm.encoder.weight for p in trainer._params) == 1
    x = nd.array(np.random.randint(0, 7, (5, 2)), ctx=ctx)
    y = nd.array(np.random.randint(0, 7, (10,)), ctx=ctx)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    w0 = lm.encoder.weight.data(ctx).asnumpy().copy()
    with autograd.record():
        loss = loss_fn(lm(x), y)
    loss.backward()
    g = lm.encoder.weight.grad(ctx).asnumpy().copy()
    trainer.step(10)
    np.testing.assert_allclose(lm.decoder.weight.data(ctx).asnumpy(), w0 - 0.1 * g / 10,
                               rtol=1e-5, atol=1e-7)


def test_prefix_and_name_scope_names():
    net = nn.HybridSequential(prefix='model_')
    with net.name_scope():
        net.add(nn.Dense(3), nn.Dense(2), nn.Conv2D(4, 3), nn.BatchNorm())
    assert net.name == 'model' and net.prefix == 'model_'
    assert [c.name for c in net] == ['model_dense0', 'model_dense1', 'model_conv0',
                                     'model_batchnorm0']
    assert list(net.collect_params())[:2] == ['0.weight', '0.bias']      # structural keys
    assert net.collect_params().prefix == 'model_'
    assert nn.Dense(2, prefix='head_').name == 'head'


def test_legacy_save_params_file_loads_by_prefixed_names(tmp_path, ctx):
    net = nn.HybridSequential(prefix='net_')
    with net.name_scope():
        net.add(nn.Dense(3, in_units=2), nn.Dense(1, in_units=3))
    net.initialize(ctx=ctx)
    # what Gluon 1.x's save_params wrote: names relative to the model's prefix
    arrays = {'dense0_weight': nd.array(np.random.randn(3, 2)),
              'dense0_bias': nd.array(np.random.randn(3)),
              'dense1_weight': nd.array(np.random.randn(1, 3)),
              'dense1_bias': nd.array(np.random.randn(1))}
    path = str(tmp_path / 'legacy.params')
    nd.save(path, arrays, format='mxnet')
    other = nn.HybridSequential(prefix='net_')
    with other.name_scope():
        other.add(nn.Dense(3), nn.Dense(1))
    other.load_parameters(path, ctx=ctx)
    np.testing.assert_array_equal(other[1].weight.data(ctx).asnumpy(),
                                  arrays['dense1_weight'].asnumpy())


def test_block_params_get_in_gluon1_custom_block(ctx):
    class Scale(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.weight = self.params.get('weight', shape=(1, 3), init='ones')
                self.offset = self.params.get_constant('offset', [[1., 2., 3.]])

        def hybrid_forward(self, F, x, weight, offset):
            return F.broadcast_mul(x, weight) + offset

    blk = Scale(prefix='scale_')
    assert blk.params.prefix == 'scale_' and list(blk.params) == ['weight', 'offset']
    blk.initialize(ctx=ctx)
    out = blk(nd.ones((2, 3), ctx=ctx))
    np.testing.assert_array_equal(out.asnumpy(), [[2, 3, 4]] * 2)
    again = Scale(params=blk.collect_params())
    assert again.weight is blk.weight


def test_constants_take_raw_device_arrays():
    """A CuPy array (here the simulated device's) as the value of ``init.Constant`` or of a
    ``Constant`` parameter went through ``np.asarray``, which CuPy refuses."""
    from xpnet.backend import sim
    with sim(0).use():
        value = sim(0).xp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    p = xpnet.layers.Parameter('w', shape=(2, 3), init=xpnet.init.Constant(value))
    p.initialize(ctx=xpnet.cpu())
    np.testing.assert_array_equal(p.data().asnumpy(), np.arange(6).reshape(2, 3))
    c = xpnet.layers.Constant(value)
    c.initialize(ctx=xpnet.cpu())
    np.testing.assert_array_equal(c.data().asnumpy(), np.arange(6).reshape(2, 3))
