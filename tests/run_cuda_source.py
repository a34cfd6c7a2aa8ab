"""A pytest plugin: every fused kernel launch of the run executes its CUDA source on the
CPU and is checked against its stand-in (``kernel_abi.fake_cupy(execute=True)``), in every
test. From ``tests/``: ``python -m pytest -q -p run_cuda_source .`` (needs g++)."""
import pytest

import kernel_abi


@pytest.fixture(autouse=True)
def _run_cuda_source(monkeypatch):
    with kernel_abi.fake_cupy(monkeypatch, execute=True):
        yield
