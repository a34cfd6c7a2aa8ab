"""Shared fixtures: the device backends every core test runs on.

``ctx`` runs a test on the CPU (NumPy), on the simulated device (NumPy arrays that refuse
to mix with host arrays, as CuPy's do) and, where a GPU and CuPy exist, on ``gpu(0)``.
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


def make_ctx(name):
    from xpnet.backend import sim
    return {'cpu': xpnet.cpu, 'sim': sim, 'gpu': xpnet.gpu}[name](0)


@pytest.fixture(params=_BACKENDS)
def ctx(request):
    """Each available device: cpu(0), the simulated device, gpu(0) if present."""
    return make_ctx(request.param)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    xpnet.random.seed(0)
    np.random.seed(0)
    yield


def oracle(name):
    """Reference arrays computed with MXNet 1.9.1 by ``tests/oracle/*.py`` (see there)."""
    path = os.path.join(os.path.dirname(__file__), 'data', name)
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
