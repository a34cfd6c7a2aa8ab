"""Helpers to store nested training state as JSON metadata plus named host arrays.

Checkpoints hold JSON (progress, RNG states, loader position, handler states) and arrays
(e.g. best weights kept by ``EarlyStoppingHandler(restore_best=True)``). ``split_arrays``
replaces every NumPy array in a JSON-like tree by ``{"__array__": key}`` and collects the
arrays; ``join_arrays`` puts them back.
"""
import random as _pyrandom

import numpy as np

from .. import random as _xrandom

__all__ = ['split_arrays', 'join_arrays', 'capture_random_state', 'restore_random_state',
           'metric_state', 'load_metric_state', 'rewind_loader_state', 'ResumePoint',
           'RandomTracker']

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


def _same_host_streams(a, b):
    """True if NumPy's and Python's global streams are in the same state in ``a`` and ``b``."""
    na, nb = a['numpy'], b['numpy']
    return (na['pos'] == nb['pos'] and na['has_gauss'] == nb['has_gauss'] and
            na['gauss'] == nb['gauss'] and np.array_equal(na['keys'], nb['keys']) and
            a['python'] == b['python'])


class RandomTracker:
    """The random states of a ``fit``'s resume points, at little cost per batch.

    xpnet's stream (shuffling, dropout, initializers) is copied at every point (~1 us).
    NumPy's and Python's global streams cost ~40 us to copy and are rarely drawn from while
    training, so they are copied at epoch boundaries only, and at every point once they
    were seen to move during an epoch (dataset transforms drawing from ``np.random``).
    :meth:`complete` fills them into a batch point: they are the boundary's while they
    have not moved since, and unknown (None) otherwise.
    """

    def __init__(self):
        self.boundary = None
        self.every_point = False

    def at_boundary(self):
        state = capture_random_state()
        if self.boundary is not None and not _same_host_streams(state, self.boundary):
            self.every_point = True
        self.boundary = state
        return state

    def at_batch(self):
        if self.every_point:
            return capture_random_state()
        return {'xpnet': _xrandom.get_state()}

    def complete(self, random):
        """``random`` with all streams, or None when the host streams are unknown."""
        if 'numpy' in random:
            return random
        if self.boundary is None or not _same_host_streams(capture_random_state(),
                                                            self.boundary):
            return None
        return dict(self.boundary, xpnet=random['xpnet'])


def restore_random_state(state):
    """Inverse of :func:`capture_random_state`."""
    _xrandom.set_state(state['xpnet'])
    n = state['numpy']
    np.random.set_state((n['kind'], np.asarray(n['keys'], dtype=np.uint32), n['pos'],
                         n['has_gauss'], n['gauss']))
    p = state['python']
    _pyrandom.setstate((p['version'], tuple(p['internal']), p['gauss']))


# ---- metrics -----------------------------------------------------------------------------
_METRIC_CONFIG = ('name', 'output_names', 'label_names')
_SCALARS = (bool, int, float, str, type(None))


def _plain(value):
    """``value`` as JSON-able data (NumPy arrays allowed), or raise TypeError."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def metric_state(metric, warn):
    """What a checkpoint keeps of ``metric``: ``{'kind': 'state_dict', ...}`` for xpnet's
    metrics and metrics defining ``state_dict()``; ``{'kind': 'attributes', ...}`` (the
    public attributes) for other subclasses of ``EvalMetric``, e.g. Gluon-style metrics that
    override ``update/get/reset`` without calling the base class (their counters are
    attributes of their own); None when an attribute cannot be saved, after
    ``warn(message)`` naming the metric and the attribute."""
    from ..metric import EvalMetric
    kind = type(metric)
    own_state = getattr(kind, 'state_dict', None) is not EvalMetric.state_dict
    if own_state or kind.__module__.startswith('xpnet.metric'):
        return {'kind': 'state_dict', 'state': metric.state_dict()}
    state = {}
    getattr(metric, '_fold', lambda: None)()     # statistics accumulated on a device
    for key, value in vars(metric).items():
        if key.startswith('_') or key in _METRIC_CONFIG:
            continue
        try:
            state[key] = _plain(value)
        except TypeError as err:
            warn(f'metric {metric.name!r} ({kind.__name__}): its attribute {key!r} (a {err}) '
                 'cannot be saved in a checkpoint, so the metric is not saved; a resumed run '
                 'restarts its value from this epoch\'s remaining batches. Give the metric '
                 'state_dict()/load_state_dict() to save it.')
            return None
    return {'kind': 'attributes', 'state': state}


def load_metric_state(metric, saved):
    """Restore what :func:`metric_state` saved (also plain ``state_dict`` results)."""
    if saved is None:
        return
    if 'kind' not in saved:         # checkpoints of earlier versions: the state_dict itself
        saved = {'kind': 'state_dict', 'state': saved}
    if saved['kind'] == 'state_dict':
        metric.load_state_dict(saved['state'])
        return
    for key, value in saved['state'].items():
        setattr(metric, key, _plain(value))


# ---- the data loader ---------------------------------------------------------------------
def rewind_loader_state(state, batches_done):
    """An ``xpnet.data.DataLoader`` state (``state_dict()``) at ``batches_done`` batches of
    the epoch: ``(state, finished)``; ``(None, False)`` for a state of another format.

    A loader has yielded the batch that was running when training stopped; the checkpoint
    of the last completed batch needs the position before it. A loader that finished the
    epoch (training stopped during the epoch's end, e.g. in validation) gives its state for
    the next epoch and ``finished=True``: the resumed run must not iterate it again for
    this epoch.
    """
    inner = state.get('batch_sampler') if isinstance(state, dict) else None
    if not isinstance(inner, dict) or 'in_progress' not in inner:
        return None, False
    if not inner['in_progress']:
        return state, True
    if 'batches_done' not in inner or int(inner['batches_done']) < batches_done:
        return None, False
    return dict(state, batch_sampler=dict(inner, batches_done=int(batches_done))), False


class ResumePoint:
    """The last consistent state of a ``fit`` run: after a batch's (or an epoch's) handlers
    all ran. What changes between two such points without any handler running (the random
    streams, the loader position, the counters) is copied; the rest (parameters, trainer,
    metrics, handler states) is current until the Estimator starts a state-changing
    handler, which marks the point stale (``valid = False``).

    Attributes:
        progress: ``Progress.state_dict()`` at the point.
        random: ``capture_random_state()`` at the point.
        num_update: the optimizer's update count at the point.
        loader: the loader's ``state_dict()`` at an epoch boundary, else None (the loader's
            current state is rewound to ``progress['epoch_batches']``).
        loader_finished: the loader had yielded every batch of the epoch (a run resumed
            after an epoch's last batch, before its end).
        valid: False once a state-changing handler ran after the point.
    """
    __slots__ = ('progress', 'random', 'num_update', 'loader', 'loader_finished', 'valid')

    def __init__(self, progress, random, num_update, loader=None, loader_finished=False):
        self.progress = progress
        self.random = random
        self.num_update = num_update
        self.loader = loader
        self.loader_finished = loader_finished
        self.valid = True
