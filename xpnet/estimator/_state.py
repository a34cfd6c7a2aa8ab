"""Helpers to store nested training state as JSON metadata plus named host arrays.

Checkpoints hold JSON (progress, RNG states, loader position, handler states) and arrays
(e.g. best weights kept by ``EarlyStoppingHandler(restore_best=True)``). ``split_arrays``
replaces every NumPy array in a JSON-like tree by ``{"__array__": key}`` and collects the
arrays; ``join_arrays`` puts them back.
"""
import random as _pyrandom

import numpy as np

from .. import random as _xrandom

__all__ = ['split_arrays', 'join_arrays', 'capture_random_state', 'restore_random_state']

_ARRAY = '__array__'


def split_arrays(tree, prefix, arrays):
    """A copy of ``tree`` with arrays replaced by references; arrays go into ``arrays``."""
    if isinstance(tree, np.ndarray):
        key = f'{prefix}'
        arrays[key] = tree
        return {_ARRAY: key}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        return {str(k): split_arrays(v, f'{prefix}/{k}', arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [split_arrays(v, f'{prefix}/{i}', arrays) for i, v in enumerate(tree)]
    return tree


def join_arrays(tree, arrays):
    """Inverse of :func:`split_arrays`."""
    if isinstance(tree, dict):
        if set(tree) == {_ARRAY}:
            return arrays[tree[_ARRAY]]
        return {k: join_arrays(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_arrays(v, arrays) for v in tree]
    return tree


def capture_random_state():
    """Every random stream a training run may draw from: xpnet's, NumPy's legacy global
    one (dataset transforms often use it) and Python's ``random``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = _pyrandom.getstate()
    return {'xpnet': _xrandom.get_state(),
            'numpy': {'kind': kind, 'keys': np.asarray(keys, dtype=np.uint32), 'pos': int(pos),
                      'has_gauss': int(has_gauss), 'gauss': float(gauss)},
            'python': {'version': version, 'internal': list(internal), 'gauss': py_gauss}}


def restore_random_state(state):
    """Inverse of :func:`capture_random_state`."""
    _xrandom.set_state(state['xpnet'])
    n = state['numpy']
    np.random.set_state((n['kind'], np.asarray(n['keys'], dtype=np.uint32), n['pos'],
                         n['has_gauss'], n['gauss']))
    p = state['python']
    _pyrandom.setstate((p['version'], tuple(p['internal']), p['gauss']))
