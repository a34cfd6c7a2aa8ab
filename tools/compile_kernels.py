"""Compile every fused-kernel family of xpnet (``xpnet/backend/kernels``) with NVRTC, for
each of its type variants, without a GPU.

NVRTC comes with CuPy's wheel (``pip install "cupy-cuda13x[ctk]"`` or ``cupy-cuda12x``);
it compiles to PTX for a virtual architecture, so no device is needed:

    PYTHONPATH=. python tools/compile_kernels.py [--arch compute_90]

Prints one line per family and variant and exits non-zero on the first compile error,
with NVRTC's log. ``tests/test_gpu_kernels_compile.py`` runs the same check when NVRTC
imports.
"""
import argparse
import sys


def compile_source(nvrtc, src, name, arch):
    """Compile ``src`` with NVRTC; returns (ok, log)."""
    prog = nvrtc.createProgram(src, name, [], [])
    try:
        nvrtc.compileProgram(prog, [f'-arch={arch}', '--std=c++17'])
        return True, ''
    except Exception as err:                 # NVRTCError: the log says why
        try:
            log = nvrtc.getProgramLog(prog)
        except Exception:
            log = ''
        return False, f'{err}\n{log}'
    finally:
        try:
            nvrtc.destroyProgram(prog)
        except Exception:
            pass


def compile_all(arch='compute_90', verbose=True):
    """Compile every family and variant; returns a list of (family, variant, log) failures."""
    from cupy_backends.cuda.libs import nvrtc
    from xpnet.backend import kernels
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
    failures = compile_all(args.arch)
    for name, variant, log in failures:
        print(f'---- {name} {variant}\n{log}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
