"""Every fused-kernel family's CUDA source compiles with NVRTC, for each type combination
it is used with (``tools/compile_kernels.py``). NVRTC ships with CuPy's wheels and needs no
GPU (``pip install "cupy-cuda13x[ctk]"`` or ``cupy-cuda12x``); without it (the CPU CI
has no CuPy) the test is skipped.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools'))


def test_every_kernel_family_compiles_for_the_gpu():
    nvrtc = pytest.importorskip('cupy_backends.cuda.libs.nvrtc',
                                reason='NVRTC (CuPy) is not installed: kernels not compiled')
    from compile_kernels import compile_all
    try:
        nvrtc.getVersion()
    except Exception as err:                      # CuPy without its NVRTC library
        pytest.skip(f'NVRTC is not loadable: {err}')
    failures = compile_all(verbose=False)
    assert not failures, '\n'.join(f'{name} {variant}:\n{log}'
                                   for name, variant, log in failures)


def test_every_family_names_its_variants():
    from xpnet.backend import kernels
    families = kernels.families()
    assert {'elementwise', 'labels', 'finite', 'softmax', 'rnn', 'norm', 'conv', 'pool',
            'optim', 'metrics'} <= set(families)
    for fam in families.values():
        assert fam.variants and all('T' in v or 'L' in v for v in fam.variants)
        assert 'extern "C" __global__' in fam.source
