"""The ``nd``/``NDArray`` surface Gluon 1.x code uses: legacy random names and MXNet's
distributions, ``slice``, ``out=``, ``nd.save``/``nd.load`` (npz and MXNet's format),
``tostype``, ``squeeze(inplace=)``, ``reset_arrays`` and NumPy interop."""
import os

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet.serialization import FileFormatError
from gradcheck import check_grad

HERE = os.path.join(os.path.dirname(__file__), 'data')


# ---- random -----------------------------------------------------------------------------------

def test_legacy_random_names_share_the_seeded_stream(ctx):
    draws = []
    for fn in (nd.uniform, nd.random_uniform, nd.random.uniform, xpnet.random.uniform):
        xpnet.random.seed(4)
        draws.append(fn(-1, 1, shape=(3, 2), ctx=ctx).asnumpy())
    for d in draws[1:]:
        np.testing.assert_array_equal(d, draws[0])
    xpnet.random.seed(4)
    a = nd.normal(shape=(5,), ctx=ctx).asnumpy()
    xpnet.random.seed(4)
    b = nd.random_normal(0, 1, shape=5, ctx=ctx).asnumpy()
    xpnet.random.seed(4)
    c = nd.random.randn(5, ctx=ctx).asnumpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.dtype == np.float32 and draws[0].min() >= -1 and draws[0].max() < 1


@pytest.mark.parametrize('fn, kwargs, mean', [
    (xpnet.random.poisson, dict(lam=3.0), 3.0),
    (nd.random.exponential, dict(scale=2.0), 2.0),
    (nd.random.gamma, dict(alpha=2.0, beta=1.5), 3.0),
    (nd.random.negative_binomial, dict(k=3, p=0.5), 3.0),
    (nd.random.generalized_negative_binomial, dict(mu=2.0, alpha=0.5), 2.0),
])
def test_distributions_have_their_mean(fn, kwargs, mean):
    x = fn(shape=(20000,), **kwargs).asnumpy()
    assert x.dtype == np.float32 and x.shape == (20000,)
    assert abs(x.mean() - mean) < 0.06 * mean


def test_ndarray_parameters_draw_per_element(ctx):
    lam = nd.array([1.0, 50.0], ctx=ctx)
    x = nd.random.poisson(lam, shape=(4000,))
    assert x.shape == (2, 4000) and x.context == ctx
    m = x.asnumpy().mean(axis=1)
    assert abs(m[0] - 1) < 0.1 and abs(m[1] - 50) < 1.5
    u = nd.random.uniform(nd.array([0., 10.], ctx=ctx), nd.array([1., 11.], ctx=ctx))
    assert u.shape == (2,) and 0 <= u.asnumpy()[0] < 1 and 10 <= u.asnumpy()[1] < 11


def test_multinomial_frequencies_and_log_probs(ctx):
    probs = nd.array([[0.2, 0.8], [1.0, 0.0]], ctx=ctx)
    idx, logp = nd.random.multinomial(probs, shape=5000, get_prob=True)
    assert idx.shape == (2, 5000) and idx.dtype == np.int32
    i = idx.asnumpy()
    assert abs(i[0].mean() - 0.8) < 0.03 and (i[1] == 0).all()
    np.testing.assert_allclose(logp.asnumpy()[0], np.log(np.where(i[0] == 1, 0.8, 0.2)),
                               rtol=1e-6)
    assert nd.random.multinomial(probs).shape == (2,)


def test_random_out_and_shuffle(ctx):
    out = nd.zeros((2, 3), ctx=ctx)
    res = nd.random.normal(shape=(2, 3), out=out)
    assert res is out and out.asnumpy().std() > 0
    x = nd.arange(10, ctx=ctx)
    s = nd.random.shuffle(x)
    assert sorted(s.asnumpy().tolist()) == list(range(10))


# ---- slicing --------------------------------------------------------------------------------

def test_slice_and_slice_axis(ctx):
    host = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = nd.array(host, ctx=ctx)
    np.testing.assert_array_equal(nd.slice(x, (None, 1), (None, 3)).asnumpy(), host[:, 1:3])
    np.testing.assert_array_equal(x.slice((0, 0, 3), (2, 3, None), (1, 2, -1)).asnumpy(),
                                  host[0:2, 0:3:2, 3::-1])
    np.testing.assert_array_equal(x.slice_axis(2, 1, -1).asnumpy(), host[:, :, 1:-1])
    np.testing.assert_array_equal(nd.slice_like(x, nd.zeros((1, 2, 9))).asnumpy(),
                                  host[:1, :2, :4])
    with pytest.raises(ValueError, match='same length'):
        x.slice((0, 1), (1,))
    check_grad(lambda a: nd.slice(a, (1, None), (3, 4), (1, 2)), [np.random.randn(4, 5)],
               ctx=ctx)


# ---- out= -----------------------------------------------------------------------------------

def test_out_writes_into_the_given_array(ctx):
    x = nd.array([[-1., 2.], [3., -4.]], ctx=ctx)
    out = nd.zeros((2, 2), ctx=ctx)
    buf = out.data
    assert nd.relu(x, out=out) is out and out.data is buf
    np.testing.assert_array_equal(out.asnumpy(), [[0, 2], [3, 0]])
    assert nd.dot(x, x, out=out) is out
    np.testing.assert_array_equal(out.asnumpy(), x.asnumpy() @ x.asnumpy())
    s = nd.zeros((2,), ctx=ctx)
    assert x.sum(axis=1, out=s) is s and s.asnumpy().tolist() == [1, -1]
    with pytest.raises(ValueError, match='shape'):
        nd.exp(x, out=nd.zeros((3,), ctx=ctx))


def test_out_inside_record_keeps_the_graph(ctx):
    x = nd.array([1., 2., 3.], ctx=ctx)
    x.attach_grad()
    out = nd.zeros((3,), ctx=ctx)
    with autograd.record():
        y = nd.exp(x, out=out)
        z = (y * y).sum()
    z.backward()
    assert y is out
    np.testing.assert_allclose(x.grad.asnumpy(), 2 * np.exp(2 * x.asnumpy()), rtol=1e-6)
    with autograd.record():
        with pytest.raises(RuntimeError, match='recorded graph'):
            nd.exp(out, out=x)


# ---- files --------------------------------------------------------------------------------------

def test_save_load_dict_and_list(tmp_path, ctx):
    a = nd.array(np.random.randn(3, 2), ctx=ctx)
    b = nd.array(np.arange(4), ctx=ctx)
    for fmt in ('npz', 'mxnet'):
        path = str(tmp_path / f'd.{fmt}')
        nd.save(path, {'a': a, 'b': b}, format=fmt)
        back = nd.load(path)
        assert sorted(back) == ['a', 'b'] and back['b'].dtype == b.dtype
        np.testing.assert_array_equal(back['a'].asnumpy(), a.asnumpy())
        nd.save(path, [a, b], format=fmt)
        lst = nd.load(path, ctx=ctx)
        assert isinstance(lst, list) and len(lst) == 2 and lst[0].context == ctx
        np.testing.assert_array_equal(lst[1].asnumpy(), b.asnumpy())
    nd.save(str(tmp_path / 'one'), a)
    assert len(nd.load(str(tmp_path / 'one'))) == 1
    assert sorted(os.listdir(tmp_path)) == ['d.mxnet', 'd.npz', 'one']   # no temporary files


def test_load_reads_mxnet_files_safely(tmp_path):
    params = nd.load(os.path.join(HERE, 'mxnet_mlp.params'))
    assert '0.weight' in params and params['0.weight'].shape == (5, 4)
    data = open(os.path.join(HERE, 'mxnet_mlp.params'), 'rb').read()
    bad = tmp_path / 'cut.params'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(FileFormatError, match='cut.params'):
        nd.load(str(bad))
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'not an archive')
    with pytest.raises(FileFormatError, match='junk.npz'):
        nd.load(str(junk))
    with pytest.raises(FileNotFoundError):
        nd.load(str(tmp_path / 'missing'))
    with pytest.raises(TypeError, match='NDArray'):
        nd.save(str(tmp_path / 'x'), {'a': np.zeros(2)})


# ---- small NDArray behaviours ----------------------------------------------------------------

def test_tostype_squeeze_inplace_reset_arrays(ctx):
    x = nd.ones((2, 1, 3), ctx=ctx)
    d = x.tostype('default')
    assert d is not x and d.shape == x.shape
    with pytest.raises(NotImplementedError, match='dense'):
        x.tostype('row_sparse')
    assert x.squeeze(inplace=True) is x and x.shape == (2, 3)
    y = nd.ones((1, 4), ctx=ctx)
    assert y.squeeze().shape == (4,) and y.shape == (1, 4)
    nd.reset_arrays(x, y, num_arrays=2)
    assert x.asnumpy().sum() == 0 and y.asnumpy().sum() == 0
    nd.waitall()


def test_numpy_interop_on_cpu_only():
    x = nd.array([[1., 5., 2.], [7., 0., 1.]])
    assert np.argmax(x) == 3 and np.argmax(x, axis=1).tolist() == [1, 0]
    host = np.asarray(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    copy = np.array(x)
    copy[0, 0] = 100
    assert x.asnumpy()[0, 0] == 1                    # np.array copies
    from xpnet.backend import sim
    with pytest.raises(TypeError, match='asnumpy'):
        np.asarray(nd.array([1., 2.], ctx=sim(0)))


def test_more_mxnet_functions(ctx):
    x = nd.array([[1., -2.], [0., 3.]], ctx=ctx)
    assert nd.cast(x, 'int32').dtype == np.int32
    np.testing.assert_array_equal(nd.greater(x, 0).asnumpy(), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(nd.lesser_equal(0, x).asnumpy(), [[1, 0], [1, 1]])
    np.testing.assert_array_equal(nd.logical_not(x).asnumpy(), [[0, 0], [1, 0]])
    np.testing.assert_array_equal(nd.moveaxis(nd.zeros((2, 3, 4)), 0, -1).shape, (3, 4, 2))
    np.testing.assert_allclose(nd.smooth_l1(nd.array([0.5, -3.]), 1.0).asnumpy(),
                               [0.125, 2.5])
    l2 = nd.L2Normalization(x).asnumpy()
    np.testing.assert_allclose((l2 ** 2).sum(axis=1), [1, 1], rtol=1e-5)
    seq = nd.array(np.arange(12, dtype=np.float32).reshape(3, 2, 2), ctx=ctx)
    masked = nd.SequenceMask(seq, nd.array([1, 3], ctx=ctx), use_sequence_length=True)
    assert masked.asnumpy()[1:, 0].sum() == 0
    assert masked.asnumpy()[:, 1].sum() == seq.asnumpy()[:, 1].sum()
    np.testing.assert_array_equal(nd.sort(nd.array([3., 1., 2.]), is_ascend=False).asnumpy(),
                                  [3, 2, 1])
