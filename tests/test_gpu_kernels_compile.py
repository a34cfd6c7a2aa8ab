"""Every fused-kernel family's CUDA source compiles with NVRTC, for each type combination
it is used with (``tools/compile_kernels.py``). NVRTC needs no GPU: the test extra installs
NVIDIA's ``nvidia-cuda-nvrtc`` wheel on Linux, so CI compiles every kernel; CuPy's NVRTC
is used where the wheel is absent; with neither the test is skipped.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools'))


def test_every_kernel_family_compiles_for_the_gpu():
    from compile_kernels import compile_all, find_nvrtc
    nvrtc = find_nvrtc()
    if nvrtc is None:
        pytest.skip('no NVRTC (pip install nvidia-cuda-nvrtc): kernels not compiled')
    failures = compile_all(verbose=False, nvrtc=nvrtc)
    assert not failures, '\n'.join(f'{name} {variant}:\n{log}'
                                   for name, variant, log in failures)


def test_nvrtc_reports_a_compile_error_with_its_log():
    from compile_kernels import compile_source, find_nvrtc
    nvrtc = find_nvrtc()
    if nvrtc is None:
        pytest.skip('no NVRTC (pip install nvidia-cuda-nvrtc)')
    ok, log = compile_source(nvrtc, 'extern "C" __global__ void k(float* y) { y[0] = z; }',
                             'bad.cu', 'compute_90')
    assert not ok and 'z' in log and 'undefined' in log.lower()


def test_every_family_names_its_variants():
    from xpnet.backend import kernels
    families = kernels.families()
    assert {'elementwise', 'labels', 'finite', 'softmax', 'rnn', 'norm', 'conv', 'pool',
            'optim', 'metrics'} <= set(families)
    for fam in families.values():
        assert fam.variants and all('T' in v or 'L' in v for v in fam.variants)
        assert 'extern "C" __global__' in fam.source
