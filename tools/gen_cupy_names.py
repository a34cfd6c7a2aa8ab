"""Write ``xpnet/backend/cupy_names.json``: the namespace of CuPy that the simulated device
exposes (and nothing else), so that a NumPy-only call fails on ``sim`` in CPU CI.

CuPy imports without a GPU, so everything is read from the installed wheel: the public names
of ``cupy`` and of the submodules xpnet may use, each function's parameters (from
``inspect.signature``, or from the first docstring line of a Cython function), which ufuncs
support ``at``/``reduce``/``accumulate``/``reduceat``/``outer`` and which keywords a ufunc call
accepts (both probed: CuPy rejects an unsupported method or keyword before it touches the
GPU), and the methods and attributes of ``cupy.ndarray``. The dtypes each ``ufunc.at``
accepts are not introspectable; they are copied from ``_scatter_op_single`` in
``cupy/_core/_routines_indexing.pyx`` (CuPy 14).

Run it in a throw-away environment (CuPy is never a dependency of the tests)::

    python -m venv /tmp/cupyvenv
    /tmp/cupyvenv/bin/pip install numpy fastrlock cuda-pathfinder
    /tmp/cupyvenv/bin/pip download --no-deps cupy-cuda12x==14.2.0 -d /tmp/cupywheel
    /tmp/cupyvenv/bin/pip install --no-deps /tmp/cupywheel/cupy_cuda12x-14.2.0-*.whl
    /tmp/cupyvenv/bin/python tools/gen_cupy_names.py xpnet/backend/cupy_names.json
"""
import importlib
import inspect
import json
import re
import sys
import types

import cupy

# Array-module namespaces the simulated device mirrors (name in the file -> import path).
NAMESPACES = ['cupy', 'cupy.linalg', 'cupy.random', 'cupy.fft', 'cupy.lib', 'cupy.lib.stride_tricks',
              'cupyx', 'cupyx.scipy.special']
# Namespaces recorded by name only (the simulated device implements a few of their names).
NAME_ONLY = ['cupy.cuda', 'cupy.cuda.runtime']
# NumPy's ufunc keywords; each is probed on cupy.add.
UFUNC_KEYWORDS = ['out', 'where', 'axes', 'axis', 'keepdims', 'casting', 'order', 'dtype',
                  'subok', 'signature']
# ufunc.at dtypes, from _scatter_op_single in cupy/_core/_routines_indexing.pyx (CuPy 14).
AT_DTYPES = {
    'add': ['int32', 'float16', 'float32', 'float64', 'uint32', 'uint64'],
    'sub': ['int32', 'uint32'],
    'max': ['int32', 'float32', 'float64', 'uint32', 'uint64'],
    'min': ['int32', 'float32', 'float64', 'uint32', 'uint64'],
    'and': ['int32', 'int64', 'uint32', 'uint64'],
    'or': ['int32', 'int64', 'uint32', 'uint64'],
    'xor': ['int32', 'int64', 'uint32', 'uint64'],
}


def split_params(text):
    """Split a parameter list at top-level commas."""
    parts, depth, cur = [], 0, ''
    for ch in text:
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def params_from_doc(obj, drop_self=False):
    """Parameters from a Cython docstring's first line, e.g.
    ``_ndarray_base.sum(self, axis=None, dtype=None, out=None, keepdims=False) -> ...``."""
    doc = (getattr(obj, '__doc__', None) or '').strip().splitlines()
    m = re.match(r'^[\w.]+\((.*)\)(\s*->.*)?$', doc[0]) if doc else None
    if not m:
        return None
    out = []
    for p in split_params(m.group(1)):
        if p in ('/', '*') or p.startswith('*'):
            out.append(p.split(':')[0].strip())
            continue
        name, eq, _ = p.partition('=')
        name = name.split(':')[0].strip().split()[-1]      # 'bint copy' -> 'copy'
        out.append(name + ('=' if eq else ''))
    if drop_self and out and out[0] == 'self':
        out = out[1:]
    return out


def params_of(obj, drop_self=False):
    """The parameter list in the file's notation: 'a' (required), 'axis=' (default),
    '/' (end of positional-only), '*' (start of keyword-only), '*args', '**kwargs'."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return params_from_doc(obj, drop_self)
    out, kinds = [], inspect.Parameter
    seen_kwonly = False
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == 'self':
        params = params[1:]
    for i, p in enumerate(params):
        if p.kind == kinds.VAR_POSITIONAL:
            out.append('*' + p.name)
            seen_kwonly = True
            continue
        if p.kind == kinds.VAR_KEYWORD:
            out.append('**' + p.name)
            continue
        if p.kind == kinds.KEYWORD_ONLY and not seen_kwonly:
            out.append('*')
            seen_kwonly = True
        out.append(p.name + ('=' if p.default is not p.empty else ''))
        if p.kind == kinds.POSITIONAL_ONLY and (
                i + 1 == len(params) or params[i + 1].kind != kinds.POSITIONAL_ONLY):
            out.append('/')
    return out


def probe(fn, *args):
    """'yes' if CuPy accepts the call far enough to reach the GPU or the array argument,
    'no' if it refuses it up front (NotImplementedError / 'Wrong arguments')."""
    try:
        fn(*args)
    except NotImplementedError:
        return False
    except TypeError as err:
        return 'Wrong arguments' not in str(err)
    except Exception:
        return True
    return True


def describe_ufunc(u):
    info = {'nin': u.nin, 'nout': u.nout}
    info['reduce'] = probe(u.reduce, None)
    info['accumulate'] = probe(u.accumulate, None)
    info['reduceat'] = probe(u.reduceat, None, None)
    info['outer'] = u.nin == 2 and u.nout == 1
    if probe(u.at, None, None):
        info['at'] = AT_DTYPES[u._scatter_op]
    return info


def describe_namespace(mod):
    entries = {}
    for name in sorted(dir(mod)):
        if name.startswith('_'):
            continue
        obj = getattr(mod, name)
        if isinstance(obj, cupy.ufunc):
            entries[name] = {'kind': 'ufunc'}
        elif isinstance(obj, type):
            entries[name] = {'kind': 'type'}
        elif isinstance(obj, types.ModuleType) or type(obj).__name__ == '_LazyModule':
            entries[name] = {'kind': 'module'}
        elif callable(obj):
            entries[name] = {'kind': 'function', 'params': params_of(obj)}
        else:
            entries[name] = {'kind': 'constant'}
    return entries


def main(path):
    out = {'cupy_version': cupy.__version__,
           'generated_by': 'tools/gen_cupy_names.py',
           'namespaces': {}, 'name_only': {}, 'ufuncs': {}}
    for ns in NAMESPACES:
        out['namespaces'][ns] = describe_namespace(importlib.import_module(ns))
    for ns in NAME_ONLY:
        mod = importlib.import_module(ns)
        out['name_only'][ns] = sorted(n for n in dir(mod) if not n.startswith('_'))
    for name in dir(cupy):
        obj = getattr(cupy, name)
        if isinstance(obj, cupy.ufunc) and not name.startswith('_'):
            out['ufuncs'][name] = describe_ufunc(obj)
    out['ufunc_keywords'] = [k for k in UFUNC_KEYWORDS if probe(_add_with, k)]
    methods, attributes = {}, []
    for name in sorted(dir(cupy.ndarray)):
        if name.startswith('_'):
            continue
        obj = getattr(cupy.ndarray, name)
        if callable(obj) and not isinstance(obj, type):
            methods[name] = params_of(obj, drop_self=True)
        else:
            attributes.append(name)
    out['ndarray'] = {'methods': methods, 'attributes': attributes}
    with open(path, 'w') as f:
        json.dump(out, f, indent=0, sort_keys=True, separators=(',', ':'))
        f.write('\n')
    n_fn = sum(len(v) for v in out['namespaces'].values())
    print(f'{path}: CuPy {cupy.__version__}, {n_fn} names, {len(out["ufuncs"])} ufuncs, '
          f'{len(methods)} ndarray methods')


def _add_with(keyword):
    cupy.add(1, 2, **{keyword: None})


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'xpnet/backend/cupy_names.json')
