"""Shared fixtures: the device backends every core test runs on.

``ctx`` runs a test on the CPU (NumPy), on the simulated device and, where a GPU and CuPy
exist, on ``gpu(0)``. The simulated device has CuPy's namespace and host/device rules; its
``sim`` case is ``sim(1)`` while the thread's current device stays ``sim(0)``, so anything
not run under its data's device raises (as CuPy does without peer access).

``ctx_list`` gives two devices of one kind for the multi-device tests: ``[cpu(0), cpu(1)]``,
``[sim(0), sim(1)]`` and, with two GPUs, ``[gpu(0), gpu(1)]``.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import xpnet  # noqa: E402

_BACKENDS = ['cpu', 'sim']
if xpnet.num_gpus() > 0:
    _BACKENDS.append('gpu')
_PAIRS = ['cpu', 'sim'] + (['gpu'] if xpnet.num_gpus() > 1 else [])


def make_ctx(name):
    """The device of backend ``name``: cpu(0), sim(1) (not the current device), gpu(0)."""
    from xpnet.backend import sim
    return {'cpu': xpnet.cpu(0), 'sim': sim(1), 'gpu': xpnet.gpu(0)}[name]


def make_ctx_list(name):
    """Two devices of backend ``name``."""
    from xpnet.backend import sim
    make = {'cpu': xpnet.cpu, 'sim': sim, 'gpu': xpnet.gpu}[name]
    return [make(0), make(1)]


@pytest.fixture(params=_BACKENDS)
def ctx(request):
    """Each available device: cpu(0), the simulated sim(1), gpu(0) if present."""
    return make_ctx(request.param)


@pytest.fixture(params=_PAIRS)
def ctx_list(request):
    """Two devices of each kind that has two: cpu(0)+cpu(1), sim(0)+sim(1), gpu(0)+gpu(1)."""
    return make_ctx_list(request.param)


@pytest.fixture(autouse=True)
def _current_device_zero():
    """Every test starts (and must end) with device 0 current in the main thread."""
    from xpnet.backend import simdevice
    simdevice.runtime.setDevice(0)
    yield
    assert simdevice.runtime.getDevice() == 0, 'a test left another simulated device current'


@pytest.fixture(autouse=True)
def _amp_off():
    """AMP (``xpnet.amp.init()``, process-wide) never leaks from one test into the next."""
    yield
    xpnet.amp._reset()


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    xpnet.random.seed(0)
    np.random.seed(0)
    yield


def assert_placed(params, ctxs=None):
    """Every replica of every Parameter in ``params`` (a dict or a Block), and its gradient
    buffer, is an array of its own device (as the array module sees it, not only as the
    NDArray says); ``ctxs``: the devices the replicas must be on, in order."""
    from xpnet.backend import context_of
    if hasattr(params, 'collect_params'):
        params = params.collect_params()
    for name, p in params.items():
        assert ctxs is None or p.list_ctx() == list(ctxs), name
        for c, d in zip(p.list_ctx(), p.list_data()):
            arrays = [d] + ([d.grad] if d.grad is not None else [])
            for a in arrays:
                assert a.context == c, (name, a.context, c)
                if c.device_type != 'cpu':      # NumPy has one device for every cpu(i)
                    assert context_of(a.data) == c, (name, context_of(a.data), c)


def oracle(name):
    """Reference arrays computed with MXNet 1.9.1 by ``tests/oracle/*.py`` (see there)."""
    path = os.path.join(os.path.dirname(__file__), 'data', name)
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
