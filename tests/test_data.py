"""Datasets and the default batchify function (dtype rules checked against MXNet 1.9.1)."""
import numpy as np
import pytest
from conftest import oracle

import xpnet
from xpnet.data import (ArrayDataset, DataLoader, Dataset, SequentialSampler, SimpleDataset,
                        default_batchify_fn)

REF = oracle('data.npz')


# ---- ArrayDataset / SimpleDataset ----------------------------------------------------------------
def test_array_dataset_samples_and_length():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    ds = ArrayDataset(x, [10, 11, 12, 13])
    assert len(ds) == 4
    data, label = ds[2]
    np.testing.assert_array_equal(data, x[2])
    assert label == 12
    single = ArrayDataset(x)
    np.testing.assert_array_equal(single[1], x[1])   # one array: the item, not a 1-tuple


def test_array_dataset_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r'same length.*array 0: 4, array 1: 3'):
        ArrayDataset(np.zeros((4, 2)), [1, 2, 3])
    with pytest.raises(ValueError, match='at least one'):
        ArrayDataset()


def test_array_dataset_1d_ndarray_becomes_numpy(ctx):
    labels = xpnet.nd.array([1, 2, 3], ctx=ctx, dtype='int32')
    feats = xpnet.nd.ones((3, 2), ctx=ctx)
    ds = ArrayDataset(feats, labels)
    data, label = ds[1]
    assert isinstance(data, xpnet.NDArray) and data.context == ctx
    assert isinstance(label, np.int32) and label == 2


def test_simple_dataset_and_iteration():
    ds = SimpleDataset(['a', 'b', 'c'])
    assert len(ds) == 3 and ds[1] == 'b' and list(ds) == ['a', 'b', 'c']


# ---- combinators ---------------------------------------------------------------------------------
def test_transform_lazy_and_eager():
    calls = []

    def double(x):
        calls.append(x)
        return 2 * x

    ds = SimpleDataset([1, 2, 3])
    lazy = ds.transform(double)
    assert calls == [] and lazy[1] == 4 and lazy[1] == 4 and calls == [2, 2]
    calls.clear()
    eager = ds.transform(double, lazy=False)
    assert calls == [1, 2, 3] and [eager[i] for i in range(3)] == [2, 4, 6]
    assert calls == [1, 2, 3]


def test_transform_unpacks_tuples_and_transform_first_keeps_label():
    ds = ArrayDataset(np.arange(3), np.array([7, 8, 9]))
    assert ds.transform(lambda x, y: x + y)[1] == 9
    assert ds.transform_first(lambda x: x * 10)[2] == (20, 9)
    assert SimpleDataset([1, 2]).transform_first(lambda x: -x)[1] == -2


def test_filter_take_shard_sample():
    ds = SimpleDataset(list(range(10)))
    even = ds.filter(lambda x: x % 2 == 0)
    assert list(even) == [0, 2, 4, 6, 8]
    assert list(ds.take(3)) == [0, 1, 2] and len(ds.take(None)) == 10 and len(ds.take(50)) == 10
    shards = [list(ds.shard(3, i)) for i in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert list(ds.sample(SequentialSampler(3, start=5))) == [5, 6, 7]
    with pytest.raises(ValueError, match=r'index must be in \[0, 3\)'):
        ds.shard(3, 3)
    with pytest.raises(ValueError, match='num_shards'):
        ds.shard(0, 0)
    with pytest.raises(TypeError, match='Sampler'):
        ds.sample([1, 2])


def test_filter_after_lazy_transform_filters_transformed_samples():
    ds = SimpleDataset(list(range(6))).transform(lambda x: x * 3)
    assert list(ds.filter(lambda x: x % 2 == 0)) == [0, 6, 12]


def test_base_dataset_is_abstract():
    with pytest.raises(NotImplementedError):
        len(Dataset())
    with pytest.raises(NotImplementedError):
        Dataset()[0]


# ---- default_batchify_fn -------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['py_int', 'np_float32_scalar', 'np_float64_rows',
                                  'nd_rows_and_int_list', 'np_uint8_and_nd_1d'])
def test_batch_dtypes_match_gluon(name):
    cases = {
        'py_int': SimpleDataset([1, 2, 3, 4]),
        'np_float32_scalar': SimpleDataset(list(np.arange(4, dtype=np.float32))),
        'np_float64_rows': ArrayDataset(np.ones((4, 2))),
        'nd_rows_and_int_list': ArrayDataset(xpnet.nd.ones((4, 2)), [0, 1, 0, 1]),
        'np_uint8_and_nd_1d': ArrayDataset(np.ones((4, 2), np.uint8),
                                           xpnet.nd.array([1, 2, 3, 4], dtype='int32')),
    }
    batch = next(iter(DataLoader(cases[name], batch_size=2)))
    parts = batch if isinstance(batch, list) else [batch]
    assert [p.dtype.name for p in parts] == REF[f'batchify/{name}'].tolist()
    assert all(isinstance(p, xpnet.NDArray) and p.context == xpnet.cpu(0) for p in parts)


def test_python_floats_batch_as_float32():
    # Documented difference: Gluon gives float64 here; xpnet keeps untyped floats float32.
    out = default_batchify_fn([0.5, 1.5])
    assert out.dtype == np.float32
    assert default_batchify_fn([np.float64(0.5), np.float64(1)]).dtype == np.float64
    assert default_batchify_fn([[1.0, 2.0], [3.0, 4.0]]).shape == (2, 2)
    assert default_batchify_fn([True, False]).dtype == np.bool_


def test_batchify_nested_structures():
    samples = [((np.full(2, i, np.float32), i), {'w': float(i)}) for i in range(3)]
    (feat, idx), rec = default_batchify_fn(samples)
    np.testing.assert_array_equal(feat.asnumpy(), np.repeat(np.arange(3), 2).reshape(3, 2))
    assert idx.asnumpy().tolist() == [0, 1, 2]
    assert rec['w'].dtype == np.float32 and rec['w'].asnumpy().tolist() == [0, 1, 2]
    # lists holding arrays are records (batched field by field) ...
    a, b = default_batchify_fn([[np.zeros(2), np.ones(3)], [np.zeros(2), np.ones(3)]])
    assert a.shape == (2, 2) and b.shape == (2, 3)
    # ... strings are left as a list
    assert default_batchify_fn(['x', 'y']) == ['x', 'y']


def test_batchify_stacks_device_ndarrays_to_cpu(ctx):
    samples = [xpnet.nd.ones((2, 3), ctx=ctx) * i for i in range(4)]
    out = default_batchify_fn(samples)
    assert out.context == xpnet.cpu(0) and out.shape == (4, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out.asnumpy()[:, 0, 0], [0, 1, 2, 3])


def test_batchify_shape_mismatch_errors():
    with pytest.raises(ValueError, match=r'different shapes \[\(2,\), \(3,\)\]'):
        default_batchify_fn([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match='different shapes'):
        default_batchify_fn([[1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match='numbers of fields'):
        default_batchify_fn([(1, 2), (1, 2, 3)])


def test_batch_does_not_alias_dataset_storage():
    x = np.zeros((4, 2), np.float32)
    for ds in (ArrayDataset(x), SimpleDataset(x), SimpleDataset(list(x))):
        batch = next(iter(DataLoader(ds, batch_size=2)))
        batch[:] = 5
        assert x.sum() == 0


# ---- the vectorized fast path gives exactly the per-sample result --------------------------------
def per_sample(ds, idx):
    return default_batchify_fn([ds[i] for i in idx])


def assert_same_batch(a, b):
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_batch(x, y)
        return
    assert isinstance(a, xpnet.NDArray) and isinstance(b, xpnet.NDArray)
    assert a.dtype == b.dtype and a.shape == b.shape and a.context == b.context
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


@pytest.mark.parametrize('make', [
    lambda ctx: ArrayDataset(np.arange(24, dtype=np.float64).reshape(8, 3)),
    lambda ctx: ArrayDataset(xpnet.nd.arange(24, ctx=ctx).reshape(8, 3),
                             xpnet.nd.arange(8, ctx=ctx)),
    lambda ctx: ArrayDataset(np.arange(8, dtype=np.uint8), np.arange(8, dtype=np.int32) * 2),
    lambda ctx: SimpleDataset(np.ones((8, 2, 2), np.float32)),
    lambda ctx: ArrayDataset(np.arange(16).reshape(8, 2), np.ones(8)).shard(2, 1),
])
def test_gather_fast_path_equals_per_sample_batching(make, ctx):
    ds = make(ctx)
    idx = [3, 0, 2, 2]
    idx = [i % len(ds) for i in idx]
    fast = ds._gather(idx)
    assert fast is not NotImplemented
    assert_same_batch(fast, per_sample(ds, idx))


def test_gather_declines_lists_and_transforms():
    assert ArrayDataset(np.zeros(3), [1, 2, 3])._gather([0]) is NotImplemented
    assert SimpleDataset(np.zeros(3)).transform(lambda x: x)._gather([0]) is NotImplemented


@pytest.mark.parametrize('make', [lambda ctx: np.arange(10, dtype=np.int16) * 3,
                                  lambda ctx: xpnet.nd.arange(20, ctx=ctx).reshape(10, 2),
                                  lambda ctx: np.array(['a', 'b'] * 5)])
def test_loader_over_raw_arrays_matches_per_sample_batching(make, ctx):
    data = make(ctx)
    fast = list(DataLoader(data, batch_size=4, shuffle=True))
    xpnet.random.seed(0)
    slow = list(DataLoader(data, batch_size=4, shuffle=True,
                           batchify_fn=lambda s: default_batchify_fn(s)))
    for a, b in zip(fast, slow):
        if isinstance(a, list):
            assert a == b
        else:
            assert_same_batch(a, b)
