"""A CPU check of the CUDA launch ABI of xpnet's fused kernels (``xpnet.backend.kernels``).

On the simulated device ``kernels.run`` runs only the NumPy stand-in, so the ``cuda()``
closures -- the code that builds a grid, a block and the argument tuple for a
``cupy.RawModule`` kernel -- never run without a GPU. :func:`fake_cupy` (a context
manager; the test module wraps it in a fixture) changes that for the simulated device:

- every family module's ``run`` runs ``cuda()`` and then the stand-in (so results stay
  those the numeric tests check), both inside one ``simulated.one_kernel`` scope;
- ``Family.function`` returns a :class:`Launch` checker instead of a compiled kernel: it
  parses the kernel's ``extern "C"`` signature from ``Family.code(**types)`` (typedefs
  and object-like macros resolved) and, when called as CuPy calls a ``RawKernel``
  (``fn(grid, block, args)``), checks what CuPy would pass to the driver: grid and block
  are tuples of 1-3 positive ints within CUDA's limits; one argument per parameter; a
  pointer parameter gets a device array (or None, where the kernel tests it for NULL) of
  exactly the pointee's C type, C-contiguous (unless the kernel takes its strides), on
  the current device, holding at least the elements the kernel indexes (:data:`EXTENTS`,
  in terms of the scalar arguments and the grid; a strided input must have the shape
  ``(N, D, H, W, C)`` it is given); a scalar parameter gets a NumPy scalar of exactly its
  C type (CuPy passes a Python int as a 64-bit integer and a float as a double, whatever
  the parameter). Nothing runs on the checker's side.

With ``execute=True`` each checked launch also runs the kernel's CUDA source on the CPU
(:class:`Executor`, ``tests/cuda_cpu.py``) and what it wrote is compared with what the
stand-in writes.

The multi-tensor optimizer kernels read device pointer tables: the checker decodes them
(addresses recorded from the arrays given to ``optim._pointers``) and checks each tensor
as a ``T*`` of the table's size.

Production code is untouched: everything is monkeypatched for the duration of the block.
"""
import bisect
import contextlib
import ctypes
import importlib
import re
import threading
import weakref

import numpy as np

from xpnet.backend import kernels, simulated
from xpnet.backend.kernels import Family

__all__ = ['fake_cupy', 'Launch', 'signatures', 'all_kernels', 'ABIError']

# CUDA launch limits (every device of compute capability >= 3.0)
MAX_GRID = (2 ** 31 - 1, 65535, 65535)
MAX_BLOCK = (1024, 1024, 64)
MAX_THREADS = 1024

# The NumPy scalar type CuPy must get for each C scalar type (its exact width and kind).
SCALARS = {'int': np.int32, 'long long': np.int64, 'float': np.float32, 'double': np.float64,
           'unsigned int': np.uint32, 'unsigned long long': np.uint64, 'short': np.int16,
           'unsigned short': np.uint16, 'signed char': np.int8, 'unsigned char': np.uint8,
           'bool': np.bool_}

# Pointer parameters a kernel may get as NULL although it does not test them itself:
# (kernel, parameter) -> predicate of the named arguments saying when NULL is fine.
NULL_WHEN = {
    ('act_bias_grad', 'y'): lambda a: int(a['act']) == 0,          # read only when act != 0
    ('act_bias_grad', 'partial'): lambda a: a['gb'] is None,       # used only for gb
    ('bn_stats', 'run_var'): lambda a: a['run_mean'] is None,      # under if (run_mean)
    ('lstm_fwd', 'clipped'): lambda a: int(a['clip_mode']) == 0,   # under if (clip_mode)
}

# The elements each kernel indexes in each pointer argument, as expressions of its scalar
# arguments (and gx, gy: the grid): a smaller array is a buffer overrun on a GPU.
_ROWS = {'g': 'rows*cols', 'y': 'rows*cols', 'gz': 'rows*cols', 'gb': 'cols', 'a': 'rows*cols',
         'out': 'rows*cols', 'bias': 'cols', 's': 'rows'}
_BN = dict({k: 'R*C' for k in ('x', 'y', 'g', 'gx')},
           **{k: 'C' for k in ('mean', 'var', 'invstd', 'run_mean', 'run_var', 'gamma', 'beta',
                               'dgamma', 'dbeta')}, partial='2*gy*C', counter='gx')
_POOL = {'y': 'N*OD*OH*OW*C', 'arg': 'N*OD*OH*OW*C', 'g': 'N*OD*OH*OW*C', 'gx': 'N*D*H*W*C',
         'col': 'N*OD*OH*OW*KD*KH*KW*C'}
_STEP = {'vl': 'N', 'bh': '3*H', 'a': 'N*G*H', 'hw': 'N*G*H', 'dg': 'N*G*H', 'dgx': 'N*G*H',
         'dgh': 'N*G*H'}
_METRIC = {'pred': 'rows*classes', 'label': 'rows', 'acc': '4', 'bad': '1'}
EXTENTS = {
    'bias_act': _ROWS, 'act_bias_grad': dict(_ROWS, partial='2*gy*cols', counter='gx'),
    'scale_rows': _ROWS, 'dropout': {'x': 'n', 'y': 'n'},
    'check_labels': {'lab': 'n', 'flag': '1'}, 'mark_nonfinite': {'x': 'n', 'flag': '1'},
    'sce_forward': {'x': 'M*n', 'label': 'M', 'loss': 'M', 'grad': 'M*n'},
    'accuracy': _METRIC, 'pick_log_sum': _METRIC, 'sum_values': {'x': 'n', 'acc': '4'},
    'bn_stats': _BN, 'bn_apply': _BN, 'bn_grad_stats': _BN, 'bn_input_grad': _BN,
    'sgd_mt': {'table': '5*gy', 'hyper': '6*gy', 'skip': '1'},
    'nag_mt': {'table': '5*gy', 'hyper': '6*gy', 'skip': '1'},
    'adam_mt': {'table': '5*gy', 'hyper': '6*gy', 'skip': '1'},
    'sumsq_mt': {'table': '5*gy', 'partial': 'gx*gy', 'counter': '1', 'norm': '1'},
    'scale_mt': {'table': '5*gy', 'norm': '1'},
    'im2col': _POOL, 'col2im': _POOL, 'max_pool': _POOL, 'max_pool_grad': _POOL,
    'avg_pool': _POOL, 'avg_pool_grad': _POOL,
}
for _k, _g in (('lstm', 4), ('gru', 3), ('rnn', 1)):
    for _d in ('fwd', 'bwd'):
        EXTENTS[f'{_k}_{_d}'] = {'G': _g, **_STEP}
# every other pointer of a recurrent step is one (N, H) state
_STEP_DEFAULT = 'N*H'


class ABIError(AssertionError):
    """A kernel launch whose configuration or arguments do not match the kernel."""


def _strip_comments(src):
    src = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
    return re.sub(r'//[^\n]*', '', src)


def _macros(src):
    """Object-like and function-like ``#define``s: name -> body (continuations joined)."""
    src = src.replace('\\\n', ' ')
    out = {}
    for m in re.finditer(r'^\s*#define\s+(\w+)(\([^)]*\))?\s*(.*)$', src, flags=re.M):
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def _typedefs(src):
    return {m.group(2): ' '.join(m.group(1).split())
            for m in re.finditer(r'typedef\s+([\w\s]+?)\s+(\w+)\s*;', src)}


def _resolve(ctype, tdefs):
    words = [w for w in ctype.split() if w not in ('const', '__restrict__', 'volatile')]
    name = ' '.join(words)
    seen = set()
    while name in tdefs and name not in seen:
        seen.add(name)
        name = tdefs[name]
    return name


class Param:
    """One kernel parameter: its name, its resolved C type and whether it is a pointer."""

    def __init__(self, name, ctype, pointer):
        self.name, self.ctype, self.pointer = name, ctype, pointer

    def __repr__(self):
        return f'{self.ctype}{"*" if self.pointer else ""} {self.name}'


def _params(text, tdefs):
    params = []
    for piece in text.split(','):
        piece = ' '.join(piece.replace('*', ' * ').split())
        if not piece or piece == 'void':
            continue
        words = piece.split()
        name, stars = words[-1], words.count('*')
        if not re.fullmatch(r'\w+', name) or stars > 1:
            raise ValueError(f'cannot check kernel parameter {piece!r}')
        base = ' '.join(w for w in words[:-1] if w != '*')
        params.append(Param(name, _resolve(base, tdefs), bool(stars)))
    return params


def signatures(code):
    """``{kernel: (params, body)}`` of every ``extern "C" __global__`` kernel of ``code``
    (the full source of one type combination); ``body`` includes the bodies of the
    macros the kernel uses (for the NULL tests)."""
    src = _strip_comments(code)
    tdefs = _typedefs(src)
    macros = _macros(src)
    out = {}
    pattern = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{')
    for m in pattern.finditer(src):
        text = m.group(2)
        for _ in range(4):                                  # object-like macros in params
            text = re.sub(r'\b(\w+)\b', lambda w: macros[w.group(1)][1]
                          if w.group(1) in macros and macros[w.group(1)][0] is None
                          else w.group(0), text)
        depth, i = 1, m.end()
        while depth:
            depth += {'{': 1, '}': -1}.get(src[i], 0)
            i += 1
        body = src[m.end():i]
        for name, (_, mbody) in macros.items():
            if re.search(rf'\b{name}\b', body):
                body += '\n' + mbody
        out[m.group(1)] = (_params(text, tdefs), body)
    return out


def all_kernels():
    """``{(family, kernel)}`` of every kernel of every family (any type combination)."""
    names = set()
    for fam in kernels.families().values():
        for k in signatures(fam.code(**fam.variants[0])):
            names.add((fam.name, k))
    return names


def _tests_null(body, name):
    n = re.escape(name)
    return re.search(rf'(\bif\s*\(\s*{n}\s*[)&|]|!\s*{n}\b|\b{n}\s*\?|\b{n}\s*&&|'
                     rf'&&\s*{n}\b|\|\|\s*{n}\b)', body) is not None


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_dims(what, dims, limits):
    if type(dims) is not tuple or not 1 <= len(dims) <= 3:
        raise ABIError(f'{what} must be a tuple of 1 to 3 ints, got {dims!r}')
    for i, (d, lim) in enumerate(zip(dims, limits)):
        if not _is_int(d):
            raise ABIError(f'{what}[{i}] must be an int, got {type(d).__name__} {d!r}')
        if not 1 <= int(d) <= lim:
            raise ABIError(f'{what}[{i}] = {int(d)} is outside [1, {lim}]')


class Launch:
    """The stand-in of one compiled kernel: checks each launch (see the module docstring)
    and records it in ``registry`` as ``(family, kernel, T)``."""

    def __init__(self, family, kernel, types, registry, addresses, executor=None):
        sigs = signatures(family.code(**types))
        if kernel not in sigs:
            raise ABIError(f'{family.name}: no extern "C" kernel {kernel!r} in the source')
        self.family, self.kernel, self.types = family, kernel, dict(types)
        self.params, self.body = sigs[kernel]
        self.registry, self.addresses = registry, addresses
        self.executor = executor

    def __call__(self, grid, block, args, **kwargs):
        where = f'{self.family.name}.{self.kernel}{self.types}'
        try:
            self._check(grid, block, args, kwargs)
            if self.executor is not None:
                self.executor.launch(self, grid, block, args)
        except ABIError as e:
            raise ABIError(f'{where}: {e}') from None
        self.registry.add((self.family.name, self.kernel, self.types.get('T')))

    def _check(self, grid, block, args, kwargs):
        if set(kwargs) - {'shared_mem', 'stream'}:
            raise ABIError(f'unknown launch options {sorted(kwargs)}')
        _check_dims('grid', grid, MAX_GRID)
        _check_dims('block', block, MAX_BLOCK)
        if int(np.prod([int(b) for b in block])) > MAX_THREADS:
            raise ABIError(f'block {block} has more than {MAX_THREADS} threads')
        if type(args) is not tuple:
            raise ABIError(f'args must be a tuple, got {type(args).__name__}')
        if len(args) != len(self.params):
            raise ABIError(f'{len(args)} arguments for {len(self.params)} parameters '
                           f'{self.params}')
        named = {p.name: a for p, a in zip(self.params, args)}
        for p, a in zip(self.params, args):
            if p.pointer:
                self._check_pointer(p, a, named)
            else:
                self._check_scalar(p, a)
        self._check_extents(named, grid)
        if 'table' in named:
            self._check_table(named)

    def _check_extents(self, named, grid):
        """Each pointer argument holds at least the elements the kernel indexes."""
        rules = EXTENTS.get(self.kernel)
        if rules is None:
            raise ABIError('no EXTENTS rule for this kernel (add one in kernel_abi.py)')
        env = {p.name: int(v) for p, v in zip(self.params, named.values())
               if not p.pointer and isinstance(v, np.integer)}
        env.update(gx=int(grid[0]), gy=int(grid[1]) if len(grid) > 1 else 1,
                   G=rules.get('G', 1))
        step = self.family.name == 'rnn'
        for p in self.params:
            a = named[p.name]
            if not p.pointer or a is None:
                continue
            expr = rules.get(p.name, _STEP_DEFAULT if step else None)
            if expr is None:
                if self._strided(p):
                    want = tuple(env[k] for k in ('N', 'D', 'H', 'W', 'C'))
                    if tuple(a.shape) != want:
                        raise ABIError(f'{p}: shape {tuple(a.shape)} for (N, D, H, W, C) '
                                       f'= {want}')
                    continue
                raise ABIError(f'no EXTENTS rule for {p}')
            need = eval(expr, {}, env)                    # noqa: S307 (test-side constants)
            if a.size < need:
                raise ABIError(f'{p} has {a.size} elements; the kernel indexes {expr} = '
                               f'{need}')

    def _strided(self, p):
        """True when the kernel reads ``p`` through strides it is given (i64 sN, sD...)."""
        names = {q.name for q in self.params}
        return p.name == 'x' and {'sN', 'sD', 'sH', 'sW', 'sC'} <= names

    def _check_pointer(self, p, a, named):
        if a is None:
            rule = NULL_WHEN.get((self.kernel, p.name))
            if _tests_null(self.body, p.name) or (rule is not None and rule(named)):
                return
            raise ABIError(f'NULL for {p}, which the kernel does not test for NULL')
        if type(a) is not simulated.SimArray:
            raise ABIError(f'{p} got {type(a).__name__} {a!r}, not a device array')
        got = kernels.ctype(a.dtype) if a.dtype in kernels._CTYPES else str(a.dtype)
        if got != p.ctype:
            raise ABIError(f'{p} got a {a.dtype} array ({got}*)')
        if a.device.id != simulated.xp.cuda.runtime.getDevice():
            raise ABIError(f'{p} is on device {a.device.id}, not the current device')
        if self._strided(p):
            strides = [int(named[k]) for k in ('sN', 'sD', 'sH', 'sW', 'sC')]
            want = [s // a.itemsize for s in a.strides]
            if a.ndim != 5 or strides != want:
                raise ABIError(f'{p}: strides {strides} for an array of element strides '
                               f'{want} (ndim {a.ndim})')
        elif not a.flags.c_contiguous:
            raise ABIError(f'{p} got a non-C-contiguous array (shape {a.shape}, strides '
                           f'{a.strides})')

    def _check_scalar(self, p, a):
        want = SCALARS.get(p.ctype)
        if want is None:
            raise ABIError(f'no NumPy scalar type known for {p}')
        if isinstance(a, simulated.SimArray):
            raise ABIError(f'{p} got a device array (passed as a pointer)')
        if type(a) is not want:
            raise ABIError(f'{p} got {type(a).__name__} {a!r}; CuPy passes it as '
                           f'{_cupy_width(a)}, the kernel reads {np.dtype(want)}')

    def _check_table(self, named):
        """The optimizer kernels' (n, 5) int64 pointer table: w, g, s1, s2, size."""
        table = named['table']
        host = table._a                  # the simulated memory itself: no host sync
        if host.ndim != 2 or host.shape[1] != 5:
            raise ABIError(f'table of shape {host.shape}, not (n, 5)')
        if 'hyper' in named and named['hyper'].shape != (host.shape[0], 6):
            raise ABIError(f'hyper of shape {named["hyper"].shape}, not ({host.shape[0]}, 6)')
        dtype = np.dtype(SCALARS[self.types['T']])
        for row in host:
            size = int(row[4])
            for k in range(4):
                if not row[k]:
                    if k < (1 if 'norm' in named else 2):
                        raise ABIError(f'NULL tensor {k} in the table')
                    continue
                ref = self.addresses.get(int(row[k]))
                arr = ref() if ref is not None else None
                if arr is None:
                    raise ABIError(f'table pointer {row[k]:#x} of no live device array')
                if arr.dtype != dtype or arr.size != size or not arr.flags.c_contiguous:
                    raise ABIError(f'table tensor {k}: {arr.dtype} {arr.shape} (C-contiguous '
                                   f'{arr.flags.c_contiguous}) for {dtype} of size {size}')


def _cupy_width(a):
    """What CuPy passes for a scalar argument (Python int -> int64, float -> float64)."""
    if isinstance(a, bool):
        return 'bool'
    if isinstance(a, int):
        return 'int64'
    if isinstance(a, float):
        return 'float64'
    if isinstance(a, np.generic):
        return str(a.dtype)
    return f'nothing (CuPy raises TypeError for {type(a).__name__})'


class Executor:
    """Runs each checked launch's CUDA source on the CPU (``tests/cuda_cpu.py``) and
    compares what it wrote with what the stand-in writes.

    In one ``kernels.run`` (one fused op): every array a kernel can write (its pointer
    arguments, and the tensors of an optimizer's pointer table) is saved when first
    touched; each launch runs twice, blocks and threads in forward then in reverse order,
    and the two results must be bit-identical (else :class:`ABIError`: a race or an
    order-dependent reduction); after ``cuda()`` the "last block" counters must be back at
    zero; each run works on copies of the arguments' memory between canaries, so a store
    out of an argument's bounds is reported; the kernels' results are kept, the arrays
    restored, the stand-in run, and every array compared with the kernels' result: float32
    within 2e-5 of the array's scale plus 1e-5, float64 within 1e-11 of it plus 1e-12 (for
    sums that cancel); integers and masks exactly."""

    SCRATCH = {'partial', 'counter'}

    def __init__(self):
        import cuda_cpu
        self.cuda_cpu = cuda_cpu
        self.kernels = {}
        self._local = threading.local()     # per thread: the per-device threads of a step

    @property
    def touched(self):             # key -> (label, name, view, saved) in this thread's op
        return self._local.__dict__.setdefault('touched', {})

    @property
    def counters(self):
        return self._local.__dict__.setdefault('counters', [])

    @staticmethod
    def _key(v):
        return (v.__array_interface__['data'][0], v.shape, v.strides, v.dtype.str)

    def _views(self, launch, args):
        out = []
        for p, a in zip(launch.params, args):
            if p.pointer and a is not None:
                label = f'{launch.kernel}.{p.name}'
                if p.name == 'counter':
                    self.counters.append(a._a)
                out.append((label, p.name, a._a))
        named = {p.name: a for p, a in zip(launch.params, args)}
        if 'table' in named:
            for i, row in enumerate(named['table']._a):
                for k, what in enumerate(('w', 'g', 's1', 's2')):
                    if row[k]:
                        arr = launch.addresses[int(row[k])]()
                        out.append((f'{launch.kernel}.table[{i}].{what}', what, arr._a))
        return out

    def launch(self, launch, grid, block, args):
        key = (launch.family.name, launch.kernel, tuple(sorted(launch.types.items())))
        kern = self.kernels.get(key)
        if kern is None:
            kern = self.kernels[key] = self.cuda_cpu.CpuKernel(launch.family, launch.kernel,
                                                               launch.types)
        views = self._views(launch, args)
        for label, name, v in views:
            self.touched.setdefault(self._key(v), (label, name, v, v.copy()))
        forward = self._guarded(kern, grid, block, args, launch, views, reverse=False)
        backward = self._guarded(kern, grid, block, args, launch, views, reverse=True,
                                 write_back=True)
        for (_, _, labels), f, b in zip(*forward, backward[1]):
            if not np.array_equal(f, b):
                raise ABIError(f'{" / ".join(labels)}: blocks and threads run in reverse '
                               f'order give other bits than in forward order (a race, or a '
                               f'result that depends on the order blocks finish)')

    GUARD = 512             # bytes of canary on each side of every argument's memory

    @staticmethod
    def _span(v):
        """The bytes ``[lo, hi)`` a NumPy view covers."""
        addr = v.__array_interface__['data'][0]
        if v.size == 0:
            return addr, addr
        lo = sum(min(0, (n - 1) * st) for n, st in zip(v.shape, v.strides))
        hi = sum(max(0, (n - 1) * st) for n, st in zip(v.shape, v.strides)) + v.itemsize
        return addr + lo, addr + hi

    def _guarded(self, kern, grid, block, args, launch, views, reverse, write_back=False):
        """Run the kernel on copies of its arguments' memory, each between canaries: a
        write outside an argument's bytes (an out-of-bounds store) is an :class:`ABIError`.
        Returns the merged memory regions ``[lo, hi, labels]`` and their copies after the
        run; ``write_back`` copies them back into the arrays."""
        spans = sorted({self._span(v): label for label, _, v in views}.items())
        regions = []                                       # [lo, hi, labels], merged
        for (lo, hi), label in spans:
            if regions and lo < regions[-1][1]:
                regions[-1][1] = max(regions[-1][1], hi)
                regions[-1][2].append(label)
            else:
                regions.append([lo, hi, [label]])
        g = self.GUARD
        bufs = []
        for lo, hi, _ in regions:
            buf = np.full(hi - lo + 2 * g, 0xA5, dtype=np.uint8)
            ctypes.memmove(buf.ctypes.data + g, lo, hi - lo)
            bufs.append(buf)
        starts = [r[0] for r in regions]

        def moved(addr):
            i = bisect.bisect_right(starts, addr) - 1
            lo, hi, _ = regions[i]
            assert lo <= addr <= hi, 'an argument outside every region'
            return bufs[i].ctypes.data + g + (addr - lo)

        named = {p.name: a for p, a in zip(launch.params, args)}
        table = named.get('table')
        moved_table = None
        if table is not None:
            moved_table = table._a.copy()
            for row in moved_table:
                for k in range(4):
                    if row[k]:
                        row[k] = moved(int(row[k]))

        def pointer(a):
            if a is table:
                return moved_table.ctypes.data
            return moved(int(a.data.ptr))

        kern(grid, block, args, reverse=reverse, pointer=pointer)
        for (lo, hi, labels), buf in zip(regions, bufs):
            for side, guard in (('before', buf[:g]), ('after', buf[len(buf) - g:])):
                if (guard != 0xA5).any():
                    raise ABIError(f'{kern.name} wrote {side} the memory of '
                                   f'{" / ".join(labels)} (an out-of-bounds store)')
            if write_back:
                ctypes.memmove(lo, buf.ctypes.data + g, hi - lo)
        return regions, [buf[g:len(buf) - g] for buf in bufs]

    def begin(self):
        self._local.touched, self._local.counters = {}, []

    def after_cuda(self):
        """Keep the kernels' results, check the counters, restore the arrays."""
        for c in self.counters:
            if c.any():
                raise ABIError(f'a "last block" counter was left at {int(c.max())}, not 0')
        results = []
        for label, name, v, saved in self.touched.values():
            results.append((label, name, v, v.copy()))
            v[...] = saved
        return results

    def compare(self, name, results):
        for label, pname, v, got in results:
            if pname in self.SCRATCH:
                continue
            want = np.asarray(v)
            if want.dtype.kind != 'f':
                if not np.array_equal(got, want):
                    bad = np.argwhere(got != want)[:3].tolist()
                    raise ABIError(f'{name}: the CUDA kernel wrote {label} differently from '
                                   f'the stand-in (at {bad})')
                continue
            rtol, atol = (2e-5, 1e-5) if want.dtype == np.float32 else (1e-11, 1e-12)
            scale = float(np.nanmax(np.abs(want), initial=0.0)) if want.size else 0.0
            finite = np.isfinite(want) & np.isfinite(got)
            same_special = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(
                np.where(np.isinf(want), want, 0), np.where(np.isinf(got), got, 0))
            err = np.abs(got[finite] - want[finite])
            tol = rtol * (np.abs(want[finite]) + scale) + atol
            if not same_special or (err > tol).any():
                worst = float(err.max()) if err.size else float('nan')
                raise ABIError(f'{name}: the CUDA kernel wrote {label} differently from '
                               f'the stand-in (largest difference {worst:.3g} for values of '
                               f'scale {scale:.3g}; NaN/inf placement equal: {same_special})')


@contextlib.contextmanager
def fake_cupy(monkeypatch, execute=False):
    """Run every fused kernel launcher's ``cuda()`` on the simulated device against
    :class:`Launch` checkers (then its stand-in); yields the registry of launched
    ``(family, kernel, T)``. With ``execute``, the checked launches also run the kernels'
    CUDA source on the CPU (:class:`Executor`)."""
    from xpnet.backend.kernels import optim
    registry, addresses, checkers = set(), {}, {}
    executor = Executor() if execute else None
    real_pointers = optim._pointers

    def function(self, xp, kernel, **types):
        assert xp is simulated.xp, 'fake_cupy launches on the simulated device only'
        xp.cuda.runtime.getDevice()                  # as Family.function reads it
        key = (self.name, kernel, tuple(sorted(types.items())))
        if key not in checkers:
            checkers[key] = Launch(self, kernel, types, registry, addresses, executor)
        return checkers[key]

    def pointers(arrays):
        for a in arrays:
            if a is not None:
                addresses[int(a.data.ptr)] = weakref.ref(a)
        return real_pointers(arrays)

    def make_run(real):
        def run(xp, name, cuda, standin):
            if xp is not simulated.xp:
                return real(xp, name, cuda, standin)
            with simulated.one_kernel(name):
                if executor is None:
                    cuda()
                    standin()
                    return
                executor.begin()
                cuda()
                results = executor.after_cuda()
                standin()
                executor.compare(name, results)
        return run

    monkeypatch.setattr(Family, 'function', function)
    monkeypatch.setattr(optim, '_pointers', pointers)
    kernels.families()                               # imports every family module
    for mod in ('checks', 'conv', 'elementwise', 'metrics', 'norm', 'optim', 'pool', 'rnn',
                'softmax'):
        m = importlib.import_module(f'xpnet.backend.kernels.{mod}')
        monkeypatch.setattr(m, 'run', make_run(kernels.run))
    yield registry
