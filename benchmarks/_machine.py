"""The machine line every benchmark prints: ratios against PyTorch differ a lot between CPUs
(AVX-512 or not, core counts), so a number means little without it.

Example::

    from _machine import machine_line
    print(machine_line())     # CPU: Intel(R) Xeon(R) Processor (AVX-512), 2 usable CPUs
"""
import os
import platform

__all__ = ['cpu_model', 'machine_line']


def _cpuinfo(key):
    """The first ``key : value`` of /proc/cpuinfo (None where there is none)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                name, _, value = line.partition(':')
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU model name ('model name' in /proc/cpuinfo, else ``platform.processor()``)."""
    return _cpuinfo('model name') or platform.processor() or platform.machine() or 'unknown'


def machine_line():
    """``CPU: <model> (AVX-512), <n> usable CPUs`` for the benchmark reports."""
    flags = (_cpuinfo('flags') or '').split()
    simd = ' (AVX-512)' if 'avx512f' in flags else ' (AVX2)' if 'avx2' in flags else ''
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return f'CPU: {cpu_model()}{simd}, {n} usable CPU{"s" if n != 1 else ""}'
