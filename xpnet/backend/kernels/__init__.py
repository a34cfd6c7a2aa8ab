"""Fused device kernels: for each family of ops, its CUDA source, its launchers and the
NumPy stand-in that the simulated device runs, side by side in one module.

A *fused path* replaces a chain of generic array calls (each one a kernel launch on a GPU)
by one launch. It applies to device arrays only (CuPy, or the simulated device) of
float32/float64; the CPU keeps its NumPy implementations. Each family module
(``elementwise``, ``checks``, ``softmax``, ``rnn``, ``norm``, ``conv``, ``pool``,
``optim``, ``metrics``) holds:

- ``SOURCE``: CUDA C++ with ``extern "C"`` kernels written against the type names ``T``
  (the data: ``float`` or ``double``) and, where needed, ``L`` (labels or lengths); a
  :class:`Family` prepends the ``typedef`` lines and :data:`PREAMBLE` (block reductions,
  Philox);
- launchers: Python functions taking device arrays that, on CuPy, compile the family once
  per device and type combination (``cupy.RawModule``, cached here and on disk by CuPy)
  and launch the kernel, and on the simulated device run the stand-in inside
  :class:`~xpnet.backend.simulated.one_kernel` (counted as the one launch it replaces);
- the stand-ins: the same arithmetic with ``xp`` array calls, so the tests run them (on
  NumPy or the simulated device) against the CPU implementation of the op.

Reductions are deterministic: every kernel splits its work by shapes only and adds
partial results in a fixed order (no floating-point atomics); reductions that need many
blocks use the "last block" pattern (each block writes its partial, the last one to
finish, found with an integer atomic counter, combines them in block order).

:func:`fused` says whether a fused path applies; ``XPNET_FUSED=0`` (or
``with kernels.disabled():``) turns them all off, leaving the generic device code (the
CPU code run through CuPy), for comparison and debugging. ``tools/compile_kernels.py`` and
``tests/test_gpu_kernels_compile.py`` compile every family's source with NVRTC.
"""
import contextlib
import os

import numpy as np

from .. import is_cupy

__all__ = ['fused', 'disabled', 'Family', 'run', 'families', 'counters', 'blocks',
           'ctype', 'PREAMBLE']

_ENABLED = [os.environ.get('XPNET_FUSED', '1') not in ('0', '')]
_FLOATS = {np.dtype(np.float32): 'float', np.dtype(np.float64): 'double'}
_CTYPES = dict(_FLOATS)
_CTYPES.update({np.dtype(k): v for k, v in (
    (np.int32, 'int'), (np.int64, 'long long'), (np.uint8, 'unsigned char'),
    (np.int8, 'signed char'), (np.uint32, 'unsigned int'), (np.bool_, 'bool'),
    (np.uint64, 'unsigned long long'), (np.int16, 'short'), (np.uint16, 'unsigned short'))})


def fused(xp, *dtypes):
    """True when a fused device path applies: ``xp`` is CuPy or the simulated device (not
    NumPy), fused paths are enabled, and every dtype given is float32 or float64."""
    if xp is np or not _ENABLED[0]:
        return False
    return all(np.dtype(d) in _FLOATS for d in dtypes)


@contextlib.contextmanager
def disabled():
    """Turn the fused paths off inside the block (the generic device code runs)."""
    prev, _ENABLED[0] = _ENABLED[0], False
    try:
        yield
    finally:
        _ENABLED[0] = prev


def ctype(dtype):
    """The CUDA C type name of a NumPy dtype (``float``, ``long long``, ...)."""
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f'no fused kernel takes dtype {np.dtype(dtype)}') from None


PREAMBLE = r'''
typedef long long i64;
typedef unsigned int u32;
typedef unsigned long long u64;
#define XP_INF __longlong_as_double(0x7ff0000000000000LL)

struct XpSum {
    template <typename A> __device__ __forceinline__ A operator()(A a, A b) const {
        return a + b;
    }
};
struct XpMax {                                  // NaN wins, as NumPy's max
    template <typename A> __device__ __forceinline__ A operator()(A a, A b) const {
        return (b > a || b != b) ? b : a;
    }
};

// One value per thread reduced over the whole block (up to 1024 threads) in a fixed
// order; every thread gets the result. `shm` holds one entry per thread.
template <typename A, typename Op>
__device__ __forceinline__ A xp_block_reduce(A v, A* shm, Op op) {
    const int nt = blockDim.x * blockDim.y * blockDim.z;
    const int tid = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    __syncthreads();
    shm[tid] = v;
    __syncthreads();
    for (int s = 512; s > 0; s >>= 1) {
        if (tid < s && tid + s < nt) shm[tid] = op(shm[tid], shm[tid + s]);
        __syncthreads();
    }
    A out = shm[0];
    __syncthreads();
    return out;
}

template <typename A>
__device__ __forceinline__ A xp_block_sum(A v, A* shm) { return xp_block_reduce(v, shm, XpSum()); }

template <typename A>
__device__ __forceinline__ A xp_block_max(A v, A* shm) { return xp_block_reduce(v, shm, XpMax()); }

// The "last block" of a multi-block reduction: every block calls this after writing its
// partial results; it returns true in exactly one block (the last to arrive), which then
// combines the partials in block order, and resets the counter for the next launch.
__device__ __forceinline__ bool xp_last_block(unsigned int* counter, unsigned int nblocks) {
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
        unsigned int done = atomicAdd(counter, 1u);
        last = (done == nblocks - 1);
        if (last) *counter = 0u;
    }
    __syncthreads();
    if (last) __threadfence();
    return last;
}

// Philox4x32-10 (Salmon et al., Random123): 4 random 32-bit words of (counter, key).
__device__ __forceinline__ uint4 xp_philox(uint4 c, uint2 k) {
    #pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k.x += 0x9E3779B9u; k.y += 0xBB67AE85u; }
        const u32 hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        const u32 hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

__device__ __forceinline__ float xp_uniform(u32 word) {
    return (float)(word >> 8) * 5.9604644775390625e-08f;      // [0, 1) in steps of 2^-24
}

// Column sums of a (rows, C) matrix over a grid (ceil(C / 32), row blocks) of (32, 8)
// blocks: each thread passes its column's two partial sums (a1, a2) over its rows; they
// are added over the block's rows, written per block to `partial` (2 * row blocks, C), and
// the last block adds the blocks' in block order. Returns true in the threads holding the
// totals (t1, t2): threadIdx.y == 0 of the last block, c < C.
__device__ __forceinline__ bool xp_column_totals(double a1, double a2, int c, int C,
                                                 double* partial, unsigned int* counter,
                                                 double* t1, double* t2) {
    __shared__ double s1[32 * 8], s2[32 * 8];
    const int tid = threadIdx.y * 32 + threadIdx.x;
    s1[tid] = a1;
    s2[tid] = a2;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double u1 = 0.0, u2 = 0.0;
        for (int j = 0; j < (int)blockDim.y; ++j) { u1 += s1[j * 32 + threadIdx.x];
                                                    u2 += s2[j * 32 + threadIdx.x]; }
        partial[(2 * (i64)blockIdx.y) * C + c] = u1;
        partial[(2 * (i64)blockIdx.y + 1) * C + c] = u2;
    }
    if (!xp_last_block(counter + blockIdx.x, gridDim.y) || threadIdx.y != 0 || c >= C)
        return false;
    double u1 = 0.0, u2 = 0.0;
    for (unsigned int b = 0; b < gridDim.y; ++b) {
        u1 += __ldcg(partial + (2 * (i64)b) * C + c);
        u2 += __ldcg(partial + (2 * (i64)b + 1) * C + c);
    }
    *t1 = u1;
    *t2 = u2;
    return true;
}

// (n, z, y, x, c) of a flat index into a C-contiguous (N, D, H, W, C) array.
__device__ __forceinline__ void xp_unravel5(i64 idx, int D, int H, int W, int C, i64& n,
                                            int& z, int& y, int& x, int& c) {
    c = (int)(idx % C); idx /= C;
    x = (int)(idx % W); idx /= W;
    y = (int)(idx % H); idx /= H;
    z = (int)(idx % D);
    n = idx / D;
}

// The output position along one axis whose window (stride s, padding p, dilation d) reads
// input position i at kernel offset k, or -1 when there is none.
__device__ __forceinline__ int xp_window_of(int i, int k, int p, int d, int s, int O) {
    const int t = i + p - k * d;
    if (t < 0 || t % s) return -1;
    return t / s < O ? t / s : -1;
}

__device__ __forceinline__ float xp_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ double xp_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
'''


_FAMILIES = {}


class Family:
    """The CUDA source of one family of kernels, compiled once per device and per type
    combination.

    Args:
        name: the family's name (kernels are counted on the simulated device as
            ``'<name>.<kernel>'``).
        source: CUDA C++ with ``extern "C" __global__`` kernels using the type names of
            ``variants``.
        variants: the type combinations the family is used with, e.g.
            ``[{'T': 'float'}, {'T': 'double'}]``; the compile test builds each one.
    """

    def __init__(self, name, source, variants):
        self.name = name
        self.source = source
        self.variants = [dict(v) for v in variants]
        self._modules = {}
        _FAMILIES[name] = self

    def code(self, **types):
        """The full source for one type combination (typedefs, preamble, kernels)."""
        head = ''.join(f'typedef {c} {k};\n' for k, c in sorted(types.items()))
        return head + PREAMBLE + self.source

    def function(self, xp, kernel, **types):
        """The compiled kernel ``kernel`` on the current CuPy device."""
        key = (xp.cuda.runtime.getDevice(), tuple(sorted(types.items())))
        entry = self._modules.get(key)
        if entry is None:
            entry = self._modules[key] = [xp.RawModule(code=self.code(**types)), {}]
        fn = entry[1].get(kernel)
        if fn is None:
            fn = entry[1][kernel] = entry[0].get_function(kernel)
        return fn


def families():
    """Every kernel family of xpnet (imports the family modules)."""
    from . import (checks, conv, elementwise, metrics, norm, optim, pool,  # noqa: F401
                   rnn, softmax)
    return dict(_FAMILIES)


def run(xp, name, cuda, standin):
    """Run one fused kernel: ``cuda()`` launches it on CuPy; on the simulated device
    ``standin()`` runs and counts as one launch named ``name``."""
    if is_cupy(xp):
        cuda()
        return
    from ..simdevice import one_kernel
    with one_kernel(name):
        standin()


_COUNTERS = {}


def counters(xp, n):
    """A zeroed uint32 array of at least ``n`` entries on the current CuPy device, for the
    "last block" reductions (each kernel leaves its counters at zero again)."""
    dev = xp.cuda.runtime.getDevice()
    buf = _COUNTERS.get(dev)
    if buf is None or buf.size < n:
        buf = _COUNTERS[dev] = xp.zeros(max(n, 4096), dtype=np.uint32)
    return buf


def blocks(n, threads=256, cap=8192):
    """The number of blocks of ``threads`` for ``n`` items with a grid-stride loop."""
    return int(max(1, min(cap, -(-int(n) // threads))))
