"""xpnet.utils: split_data / split_and_load (Gluon's slicing rule and errors), clip_global_norm
(MXNet 1.9.1 parity, warnings, devices), check_sha1, replace_file; and the simulated
device's host-to-device copy (a core fix made for these tests)."""
import hashlib

import numpy as np
import pytest
from conftest import oracle

import xpnet
from xpnet import autograd
from xpnet.backend import sim, to_device
from xpnet.utils import check_sha1, clip_global_norm, replace_file, split_and_load, split_data


def test_split_data_even_and_uneven(ctx):
    x = xpnet.array(np.arange(30).reshape(10, 3), ctx=ctx)
    parts = split_data(x, 5)
    assert [p.shape for p in parts] == [(2, 3)] * 5
    np.testing.assert_array_equal(np.concatenate([p.asnumpy() for p in parts]), x.asnumpy())
    parts = split_data(x, 3, even_split=False)      # Gluon: the first slices are larger
    assert [p.shape[0] for p in parts] == [4, 3, 3]
    np.testing.assert_array_equal(parts[1].asnumpy(), x.asnumpy()[4:7])
    cols = split_data(xpnet.array(np.arange(12).reshape(2, 6), ctx=ctx), 3, batch_axis=1)
    np.testing.assert_array_equal(cols[2].asnumpy(), [[4, 5], [10, 11]])
    assert len(split_data(x, 1)) == 1


def test_split_errors():
    x = xpnet.array(np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r'shape \(10, 3\) cannot be evenly split into 3 '
                                         r'slices along axis 0.*even_split=False'):
        split_data(x, 3)
    with pytest.raises(ValueError, match=r'cannot be evenly split into 4'):
        split_and_load(np.zeros((10, 2)), [xpnet.cpu(i) for i in range(4)])
    with pytest.raises(ValueError, match='batch_axis 2 is out of range'):
        split_data(x, 2, batch_axis=2)
    with pytest.raises(ValueError, match='too few'):
        split_data(xpnet.array(np.zeros((1, 3))), 2, even_split=False)
    with pytest.raises(ValueError, match='empty'):
        split_and_load(x, [])


def test_split_and_load_places_slices():
    ctxs = [xpnet.cpu(0), xpnet.cpu(1), sim(0)]
    host = np.random.randn(6, 2)                    # float64 host data becomes float32
    parts = split_and_load(host, ctxs)
    assert [p.context for p in parts] == ctxs
    assert all(p.dtype == np.float32 for p in parts)
    np.testing.assert_allclose(np.concatenate([p.asnumpy() for p in parts]), host, rtol=1e-6)
    labels = split_and_load(np.arange(6), ctxs[:2])
    assert labels[0].dtype == np.arange(6).dtype and labels[1].asnumpy().tolist() == [3, 4, 5]
    nd_parts = split_and_load(xpnet.array(host), ctxs, batch_axis=0)
    for a, b in zip(parts, nd_parts):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    x = xpnet.array(host)
    assert split_and_load(x, [xpnet.cpu(0)])[0] is x          # already there: no copy
    single = split_and_load(host, xpnet.cpu(1))
    assert len(single) == 1 and single[0].context == xpnet.cpu(1)


def test_split_and_load_is_differentiable():
    x = xpnet.array(np.arange(8.0).reshape(4, 2))
    x.attach_grad()
    with autograd.record():
        a, b = split_and_load(x, [xpnet.cpu(0), xpnet.cpu(1)])
        loss = (a * 2).sum() + (b * 3).sum().as_in_context(xpnet.cpu(0))
    loss.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), [[2, 2], [2, 2], [3, 3], [3, 3]])


@pytest.mark.parametrize('max_norm', [1.0, 100.0])
def test_clip_global_norm_matches_mxnet(max_norm, ctx):
    data = oracle('optimizer.npz')
    arrays = [xpnet.array(data[f'clip/in{k}'], ctx=ctx) for k in range(3)]
    norm = clip_global_norm(arrays, max_norm)
    assert isinstance(norm, float)
    np.testing.assert_allclose(norm, data[f'clip/norm_{max_norm:g}'], rtol=1e-5)
    for k, a in enumerate(arrays):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a.asnumpy(), data[f'clip/out{k}_{max_norm:g}'], rtol=1e-5,
                                   atol=1e-7)


def test_clip_global_norm_without_sync_and_across_devices():
    rng = np.random.RandomState(0)
    hosts = [rng.randn(4, 3).astype(np.float32), rng.randn(7).astype(np.float32)]
    arrays = [xpnet.array(hosts[0], ctx=xpnet.cpu(0)), xpnet.array(hosts[1], ctx=sim(0))]
    norm = clip_global_norm(arrays, 0.5, check_isfinite=False)
    expected = np.sqrt(sum((h.astype(np.float64) ** 2).sum() for h in hosts))
    assert isinstance(norm, xpnet.NDArray) and norm.shape == (1,)
    assert norm.context == xpnet.cpu(0)
    np.testing.assert_allclose(norm.asnumpy(), [expected], rtol=1e-5)
    for a, h in zip(arrays, hosts):
        np.testing.assert_allclose(a.asnumpy(), h * 0.5 / expected, rtol=1e-5)
    total = np.sqrt(sum((a.asnumpy().astype(np.float64) ** 2).sum() for a in arrays))
    np.testing.assert_allclose(total, 0.5, rtol=1e-5)


def test_clip_global_norm_warns_on_nan():
    a = xpnet.array(np.array([1.0, np.nan]))
    with pytest.warns(UserWarning, match='nan or inf is detected'):
        norm = clip_global_norm([a], 1.0)
    assert np.isnan(norm)
    with pytest.raises(ValueError, match='empty'):
        clip_global_norm([], 1.0)


def test_check_sha1_and_replace_file(tmp_path):
    path = tmp_path / 'a.bin'
    path.write_bytes(b'xpnet' * 1000)
    assert check_sha1(str(path), hashlib.sha1(b'xpnet' * 1000).hexdigest())
    assert not check_sha1(str(path), '0' * 40)
    src = tmp_path / 'new.bin'
    src.write_bytes(b'new')
    replace_file(str(src), str(path))
    assert path.read_bytes() == b'new' and not src.exists()


def test_sim_device_copy_does_not_alias_host_memory():
    """xpnet.backend.simulated: moving a float32 host array to the simulated device used to
    wrap the host memory itself (CuPy always copies), so device updates leaked to the host."""
    host = np.ones(3, np.float32)
    dev = to_device(host, sim(0))
    dev += 1
    assert host.tolist() == [1, 1, 1]
    x = xpnet.array(host, ctx=sim(0))
    x += 1
    assert host.tolist() == [1, 1, 1]
