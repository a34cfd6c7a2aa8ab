"""Compile every fused-kernel family of xpnet (``xpnet/backend/kernels``) with NVRTC, for
each of its type variants, without a GPU.

NVRTC compiles to PTX for a virtual architecture, so no device is needed. It is found in
NVIDIA's ``nvidia-cuda-nvrtc`` wheel (58 MB, no CuPy needed; the test extra installs it
on Linux, so CI compiles every kernel), or through CuPy's bindings when CuPy is installed
(``cupy-cuda12x``/``cupy-cuda13x`` with their NVRTC):

    PYTHONPATH=. python tools/compile_kernels.py [--arch compute_90]

Prints one line per family and variant and exits non-zero on the first compile error,
with NVRTC's log. ``tests/test_gpu_kernels_compile.py`` runs the same check whenever an
NVRTC is found.
"""
import argparse
import ctypes
import glob
import os
import sys


NOT_FOUND = 'no NVRTC found: pip install nvidia-cuda-nvrtc (or CuPy)'


class NvrtcError(RuntimeError):
    """NVRTC refused a program (the message holds its log)."""


class WheelNvrtc:
    """NVRTC's C API through ctypes, from the ``nvidia-cuda-nvrtc`` wheel's library."""

    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    @classmethod
    def find(cls):
        """The newest ``libnvrtc.so.*`` of the installed ``nvidia`` wheels, or None."""
        try:
            import nvidia
        except ImportError:
            return None
        found = []
        for root in nvidia.__path__:
            found += glob.glob(os.path.join(root, '*', 'lib', 'libnvrtc.so.*'))
        found = [f for f in found if 'builtins' not in os.path.basename(f)]
        for path in sorted(found, reverse=True):
            try:
                return cls(path)
            except OSError:
                continue
        return None

    def version(self):
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
        return major.value, minor.value

    def _check(self, status):
        if status:
            raise NvrtcError(self.lib.nvrtcGetErrorString(status).decode())

    def compile(self, src, name, options):
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(),
                                                name.encode(), 0, None, None))
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            if status:
                size = ctypes.c_size_t()
                self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
                log = ctypes.create_string_buffer(size.value + 1)
                self.lib.nvrtcGetProgramLog(prog, log)
                raise NvrtcError(f'{self.lib.nvrtcGetErrorString(status).decode()}\n'
                                 f'{log.value.decode(errors="replace")}')
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


class CupyNvrtc:
    """NVRTC through CuPy's bindings (``cupy_backends.cuda.libs.nvrtc``)."""

    def __init__(self, nvrtc):
        self.nvrtc = nvrtc
        self.path = 'CuPy'

    @classmethod
    def find(cls):
        try:
            from cupy_backends.cuda.libs import nvrtc
            nvrtc.getVersion()
        except Exception:                 # no CuPy, or CuPy without its NVRTC library
            return None
        return cls(nvrtc)

    def version(self):
        return tuple(self.nvrtc.getVersion())

    def compile(self, src, name, options):
        prog = self.nvrtc.createProgram(src, name, [], [])
        try:
            self.nvrtc.compileProgram(prog, list(options))
        except Exception as err:
            try:
                log = self.nvrtc.getProgramLog(prog)
            except Exception:
                log = ''
            raise NvrtcError(f'{err}\n{log}') from None
        finally:
            try:
                self.nvrtc.destroyProgram(prog)
            except Exception:
                pass


def find_nvrtc():
    """An NVRTC (the wheel's library first, then CuPy's), or None."""
    return WheelNvrtc.find() or CupyNvrtc.find()


def compile_source(nvrtc, src, name, arch):
    """Compile ``src`` with NVRTC; returns (ok, log)."""
    try:
        nvrtc.compile(src, name, [f'-arch={arch}', '--std=c++17'])
        return True, ''
    except NvrtcError as err:
        return False, str(err)


def compile_all(arch='compute_90', verbose=True, nvrtc=None):
    """Compile every family and variant; returns a list of (family, variant, log) failures."""
    from xpnet.backend import kernels
    nvrtc = nvrtc or find_nvrtc()
    if nvrtc is None:
        raise RuntimeError(NOT_FOUND)
    failures = []
    for name, fam in sorted(kernels.families().items()):
        for variant in fam.variants:
            ok, log = compile_source(nvrtc, fam.code(**variant), f'{name}.cu', arch)
            if verbose:
                print(f'{name:12s} {variant}: {"ok" if ok else "FAILED"}', flush=True)
            if not ok:
                failures.append((name, variant, log))
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', default='compute_90')
    args = ap.parse_args(argv)
    nvrtc = find_nvrtc()
    if nvrtc is None:
        print(NOT_FOUND, file=sys.stderr)
        return 2
    print(f'NVRTC {".".join(map(str, nvrtc.version()))} ({nvrtc.path})')
    failures = compile_all(args.arch, nvrtc=nvrtc)
    for name, variant, log in failures:
        print(f'---- {name} {variant}\n{log}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
