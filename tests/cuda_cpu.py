"""Run xpnet's CUDA kernels on the CPU: each family's CUDA source, compiled as C++ against
``tests/cuda_cpu/xpcuda_cpu.h`` (CUDA's execution model: blocks in turn, the threads of a
block as cooperatively scheduled fibers with real ``__syncthreads`` barriers), loaded with
ctypes and launched on the simulated device's memory.

This is what lets CPU CI execute the *CUDA source itself* (not only its NumPy stand-in):
``tests/test_gpu_kernels_cpu.py`` runs training scenarios with every launch executed here
and compared with the stand-in, and each launch run twice, with blocks and threads in
forward and in reverse order, requiring bit-identical results (a race between threads of
one phase, or a dependence on the order blocks finish, shows as a difference).

What it cannot see: anything about warps (none of the kernels uses warp intrinsics),
memory-model subtleties of real concurrent execution (``__threadfence`` is a no-op here)
and GPU-specific floating-point contraction (FMA). Needs ``g++``; :func:`available` says.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np

from kernel_abi import signatures

__all__ = ['available', 'compile_family', 'CpuKernel', 'KernelError']

_HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(_HERE, 'cuda_cpu', 'xpcuda_cpu.h')
_CACHE = {}
_LOCK = threading.Lock()        # the emulation's state is global: one launch at a time


class KernelError(RuntimeError):
    """A kernel that fails to compile as C++ or misbehaves when run (divergent barrier)."""


_AVAILABLE = []


def available():
    """True when a kernel can be built and run here: ``g++`` is found, and a trivial family
    compiles, loads (a ``noexec`` temporary directory would refuse it) and launches."""
    if not _AVAILABLE:
        _AVAILABLE.append(_smoke_test())
    return _AVAILABLE[0]


def _smoke_test():
    if shutil.which('g++') is None:
        return False
    from xpnet.backend.kernels import Family, _FAMILIES
    fam = Family('cuda_cpu_smoke', r'''
extern "C" __global__ void smoke(T* y) {
    __shared__ T s[2];
    s[threadIdx.x] = (T)threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = s[1 - threadIdx.x];
}''', [{'T': 'double'}])
    _FAMILIES.pop('cuda_cpu_smoke', None)
    try:
        y = np.zeros(2)
        CpuKernel(fam, 'smoke', {'T': 'double'})((1,), (2,), (y,),
                                                  pointer=lambda a: a.ctypes.data)
        return y.tolist() == [1.0, 0.0]
    except (OSError, KernelError):
        return False


def _rewrite_shared(code):
    """``__shared__ T a[n], b;`` -> ``static T a[n], b; XPCPU_SHARED(a) XPCPU_SHARED(b)``."""
    def repl(m):
        decls = m.group(2)
        names, depth, start = [], 0, 0
        for i, ch in enumerate(decls + ','):
            if ch in '[(':
                depth += 1
            elif ch in '])':
                depth -= 1
            elif ch == ',' and depth == 0:
                names.append(re.match(r'\s*(\w+)', decls[start:i]).group(1))
                start = i + 1
        return (f'static {m.group(1)} {decls};'
                + ''.join(f' XPCPU_SHARED({n})' for n in names))
    return re.sub(r'__shared__\s+([\w ]+?)\s+(\w[^;]*);', repl, code)


def _cache_dir():
    d = os.environ.get('XPNET_CUDA_CPU_CACHE') or os.path.join(
        tempfile.gettempdir(), f'xpnet-cuda-cpu-{os.getuid()}')
    os.makedirs(d, exist_ok=True)
    return d


def compile_family(family, **types):
    """The ctypes library of one family for one type combination (compiled once, cached
    on disk by the source's hash)."""
    code = family.code(**types)
    key = (family.name, code)
    lib = _CACHE.get(key)
    if lib is not None:
        return lib
    kernels = list(signatures(code))
    with open(HEADER) as f:
        header = f.read()
    src = ('#include "xpcuda_cpu.h"\n' + _rewrite_shared(code) + '\n'
           + ''.join(f'XPCPU_EXPORT({k})\n' for k in kernels))
    digest = hashlib.sha256((header + src).encode()).hexdigest()[:16]
    so = os.path.join(_cache_dir(), f'{family.name}-{digest}.so')
    if not os.path.exists(so):
        cpp = so[:-3] + '.cpp'
        with open(cpp, 'w') as f:
            f.write(src)
        tmp = f'{so}.{os.getpid()}.tmp'
        cmd = ['g++', '-std=c++17', '-O2', '-fPIC', '-shared', '-w', '-fno-fast-math',
               '-ffp-contract=off', f'-I{os.path.dirname(HEADER)}', cpp, '-o', tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise KernelError(f'{family.name} {types}: the CUDA source does not compile as '
                              f'C++ against xpcuda_cpu.h:\n{proc.stderr[-4000:]}')
        os.replace(tmp, so)
    lib = _CACHE[key] = ctypes.CDLL(so)
    return lib


def _functions(code):
    """``{name: body}`` of the functions defined in ``code`` (comments stripped)."""
    src = re.sub(r'//[^\n]*', '', re.sub(r'/\*.*?\*/', ' ', code, flags=re.S))
    out = {}
    for m in re.finditer(r'\b(\w+)\s*\([^;{}()]*(?:\([^()]*\)[^;{}()]*)*\)\s*(?:const\s*)?\{',
                         src):
        depth, i = 1, m.end()
        while depth and i < len(src):
            depth += {'{': 1, '}': -1}.get(src[i], 0)
            i += 1
        out.setdefault(m.group(1), '')
        out[m.group(1)] += src[m.end():i]
    return out


def needs_barrier(code, kernel):
    """True when ``kernel`` (or a function it calls, transitively, or a macro) can reach
    ``__syncthreads()`` or declares ``__shared__`` memory."""
    fns = _functions(code)
    macros = ' '.join(re.findall(r'#define[^\n]*', code))
    marked = {n for n, b in fns.items() if '__syncthreads' in b or '__shared__' in b}
    while True:
        more = {n for n, b in fns.items() if n not in marked
                and any(re.search(rf'\b{m}\b', b) for m in marked)}
        if not more:
            break
        marked |= more
    body = fns.get(kernel, '') + macros
    return '__syncthreads' in body or any(re.search(rf'\b{m}\b', body) for m in marked
                                          if m != kernel)


class CpuKernel:
    """One kernel of a compiled family, launched as CuPy launches a ``RawKernel``:
    ``k(grid, block, args, reverse=False)``; ``args`` are device arrays (or None) for
    pointer parameters and NumPy scalars of the exact C type for the others."""

    def __init__(self, family, kernel, types):
        self.name = f'{family.name}.{kernel}'
        code = family.code(**types)
        self.params = signatures(code)[kernel][0]
        self.fibers = needs_barrier(code, kernel)
        fn = getattr(compile_family(family, **types), f'xpcpu_launch_{kernel}')
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                       ctypes.c_char_p, ctypes.c_int]
        self._fn = fn

    def __call__(self, grid, block, args, reverse=False, pointer=None):
        """``pointer(a)`` gives the address of a device array (default ``a.data.ptr``)."""
        dims = np.ones(6, dtype=np.uint32)
        dims[:len(grid)] = [int(g) for g in grid]
        dims[3:3 + len(block)] = [int(b) for b in block]
        keep = []
        for p, a in zip(self.params, args):
            if p.pointer:
                addr = 0 if a is None else (pointer(a) if pointer else int(a.data.ptr))
                keep.append(np.array([addr], dtype=np.uint64))
            else:
                keep.append(np.array([a]))          # exactly the scalar's type and width
        table = (ctypes.c_void_p * len(keep))(*[k.ctypes.data for k in keep])
        err = ctypes.create_string_buffer(512)
        with _LOCK:
            failed = self._fn(dims.ctypes.data, table, int(bool(reverse)), int(self.fibers),
                              err, 512)
        if failed:
            raise KernelError(f'{self.name}: {err.value.decode()}')
