"""The Estimator across MPI ranks: global metric values, decisions every rank agrees on,
per-rank state in checkpoints, and validation shards without duplicates.

Only a job of more than one rank uses this module (a single process never calls it, so
it never imports mpi4py). Every function here is a collective: every rank calls it at the
same point of the program, which the Estimator guarantees by calling them from its loop
and from handlers that run on every rank.
"""
import hashlib
import json

import numpy as np

from .. import distributed as dist
from ..metric import EvalMetric, mergeable
from ..ndarray import NDArray
from ._state import join_arrays, split_arrays

__all__ = ['GlobalMetrics', 'ranks_where', 'gather_rank_states',
           'select_rank_state', 'validation_batches']


# ---- metric values -----------------------------------------------------------------------
class GlobalMetrics:
    """Metric values over the data of every rank, for ``Estimator.metric_value(s)``.

    A read reduces *every* metric the estimator knows (its training and validation
    metrics, those of its MetricHandlers, and the ones asked for) in one gather: each rank
    contributes each metric's :meth:`~xpnet.metric.EvalMetric.reduction_state` and every
    rank merges them in rank order (:meth:`~xpnet.metric.EvalMetric.merged`), so all ranks
    get the same bits. Reads within one handler call (``key``) reuse that result. A
    metric without the protocol (:func:`~xpnet.metric.mergeable` is False) shows rank 0's
    value, with a warning naming it once.
    """

    def __init__(self, warn):
        self._warn = warn
        self._key = None
        self._values = {}        # id(metric) -> (name, value)
        self._warned = set()

    def values(self, metrics, known, key):
        """``[(name, value)]`` of ``metrics`` over all ranks; ``known`` are the other metrics
        worth reducing in the same gather; ``key`` identifies the current handler call
        (None: do not reuse earlier results)."""
        if key is None or key != self._key or any(id(m) not in self._values for m in metrics):
            self._reduce(_unique(list(known) + list(metrics)))
            self._key = key
        return [self._values[id(m)] for m in metrics]

    def _reduce(self, metrics):
        local = [self._local_state(m) for m in metrics]
        rows = allgather_vectors(local)
        self._values = {}
        for i, m in enumerate(metrics):
            states = [row[i] for row in rows]
            if mergeable(m):
                self._values[id(m)] = m.merged(states).get()
            else:
                name, value = m.get()
                first = states[0]
                self._values[id(m)] = (name, first.tolist() if isinstance(value, (list, tuple))
                                       else float(first[0]))

    def _local_state(self, m):
        if mergeable(m):
            return m.reduction_state()
        if id(m) not in self._warned:
            self._warned.add(id(m))
            self._warn(
                f'metric {m.name!r} ({type(m).__name__}) overrides get() without '
                'reduction_state()/merged(), so it cannot be combined across ranks: rank 0\'s '
                'value (on its shard of the data) is shown and used for decisions. Define '
                'both methods (see xpnet.metric.EvalMetric.merged) for the global value.')
        value = m.get()[1]
        return np.asarray(value if isinstance(value, (list, tuple)) else [value],
                          np.float64).reshape(-1)


def _unique(metrics):
    seen, out = set(), []
    for m in metrics:
        if isinstance(m, EvalMetric) and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


def allgather_vectors(vectors):
    """Every rank's list of float64 vectors (``vectors``: this rank's, the same count on
    every rank, lengths free), as ``[rank][i] -> vector``; one variable-length gather."""
    n = len(vectors)
    mine = np.concatenate([np.array([len(v) for v in vectors], np.float64)] +
                          [np.asarray(v, np.float64).reshape(-1) for v in vectors])
    flat = dist.communicator().allgatherv(mine)
    rows, pos = [], 0
    for _ in range(dist.size()):
        lengths = flat[pos:pos + n].astype(np.int64)
        pos += n
        row = []
        for length in lengths:
            row.append(flat[pos:pos + length])
            pos += length
        rows.append(row)
    return rows


# ---- decisions ---------------------------------------------------------------------------
def ranks_where(flag):
    """The ranks (on every rank) where ``flag`` is true."""
    flags = np.zeros(dist.size())
    flags[dist.rank()] = 1.0 if flag else 0.0
    dist.allreduce(flags)
    return [int(r) for r in np.flatnonzero(flags)]


# ---- per-rank training state -------------------------------------------------------------
_SHARED = ('progress', 'history')       # the same on every rank: rank 0's is kept


def _entries(meta):
    """``{name: subtree}`` of the parts of a training state that may differ by rank."""
    out = {k: v for k, v in meta.items() if k not in _SHARED and k != 'handlers'}
    out.update({f'handlers/{k}': v for k, v in meta.get('handlers', {}).items()})
    return out


def _digest(tree, arrays):
    """A SHA-256 of a training-state subtree, arrays included by content."""
    h = hashlib.sha256()

    def walk(v):
        if isinstance(v, dict) and set(v) == {'__array__'}:
            a = np.ascontiguousarray(arrays[v['__array__']])
            h.update(f'{a.dtype.str}{a.shape}'.encode())
            h.update(a.tobytes())
            return '<array>'
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    h.update(json.dumps(walk(tree), sort_keys=True).encode())
    return h.hexdigest()


def gather_rank_states(meta, arrays):
    """This rank's ``training_state()`` ``(meta, arrays)`` joined with every other rank's
    own parts (collective).

    The parts that may differ by rank (random streams, loader position, metric states,
    each handler's state; not progress and history) are compared by digest; rank r's parts
    that differ from rank 0's are sent and stored under ``meta['ranks'][r]``, so states
    that agree (best weights of early stopping, say) are stored once. ``meta['world_size']``
    records the number of ranks. Rank 0's result is the checkpoint's content (the other
    ranks' top-level parts are their own).
    """
    entries = _entries(meta)
    digests = dist.allgather_object({k: _digest(v, arrays) for k, v in entries.items()})
    meta = dict(meta, world_size=dist.size(), ranks=[{} for _ in range(dist.size())])
    arrays = dict(arrays)
    for r in range(1, dist.size()):
        differ = [k for k in entries if digests[r].get(k) != digests[0].get(k)]
        if not differ:
            continue
        mine = {k: join_arrays(entries[k], arrays) for k in differ} \
            if r == dist.rank() else None
        theirs = dist.broadcast_object(mine, root=r)
        meta['ranks'][r] = {k: split_arrays(v, f'ranks/{r}/{k}', arrays)
                            for k, v in theirs.items()}
    return meta, arrays


def select_rank_state(meta, rank, size):
    """The training state of ``rank`` from a checkpoint's ``meta`` (rank 0's parts, with
    those saved for ``rank`` instead). ``ValueError`` if the checkpoint was written by a
    job of another size: its per-rank states (random streams, data positions) have no
    counterpart then."""
    saved = int(meta.get('world_size', 1))
    if saved != size:
        raise ValueError(
            f'the checkpoint was written by a job of {saved} rank(s) and this job has {size}: '
            f'resume it with {saved} rank(s) (mpiexec -n {saved} ...) to continue it exactly, '
            'or start a new run from its parameters (net.load_parameters(<stem>.params))')
    own = (meta.get('ranks') or [{}] * size)[rank]
    if not own:
        return meta
    meta = dict(meta, handlers=dict(meta.get('handlers', {})))
    for key, value in own.items():
        if key.startswith('handlers/'):
            meta['handlers'][key[len('handlers/'):]] = value
        else:
            meta[key] = value
    return meta


# ---- validation shards -------------------------------------------------------------------
def split_sampler_of(loader):
    """The ``SplitSampler`` an xpnet DataLoader draws from, else None."""
    from ..data import SplitSampler
    # xpnet's DataLoader and BatchSampler keep these privately
    sampler = getattr(getattr(loader, '_batch_sampler', None), '_sampler', None)
    return sampler if isinstance(sampler, SplitSampler) else None


def unsharded(loader):
    """True for an xpnet DataLoader that reads the whole data set in every process (its
    own sequential or random sampler)."""
    from ..data import RandomSampler, SequentialSampler
    sampler = getattr(getattr(loader, '_batch_sampler', None), '_sampler', None)
    return type(sampler) in (SequentialSampler, RandomSampler)


def validation_batches(loader, batch_axis):
    """The batches of ``loader`` with ``SplitSampler``'s padding left out.

    A ``SplitSampler`` pads its parts by wrapping around, so that every rank gets
    ``ceil(length / ranks)`` indices; the repeated index is the last one of its part. Here
    it is cut from the last batch, so every sample is evaluated (and counted in the
    metrics) once. Every rank still runs the same number of batches: when the last batch
    holds a single sample (the same on every rank), it is joined to the one before.
    Other loaders are iterated as they are.
    """
    sampler = split_sampler_of(loader)
    if sampler is None:
        return iter(loader)
    state = sampler.state_dict()
    if len(sampler) * state['num_parts'] == state['length']:      # no part is padded
        return iter(loader)
    return _trimmed(loader, len(sampler), sampler.padding, batch_axis)


def _trimmed(loader, n, padding, batch_axis):
    rows, held = 0, None
    for batch in loader:
        rows += _rows(batch, batch_axis)
        if held is not None:
            batch, held = _join(held, batch, batch_axis), None
        if rows == n - 1:           # the next batch is the last and holds one sample
            held = batch
            continue
        if rows == n and padding:
            batch = _cut_last(batch, batch_axis)
            if _rows(batch, batch_axis) == 0:
                continue            # a part of one (padded) sample: nothing to evaluate
        yield batch
    if held is not None:
        yield held


def _rows(batch, axis):
    first = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
    shape = getattr(first, 'shape', None)
    if shape is None or len(shape) <= axis:
        raise ValueError('validation with a SplitSampler under MPI needs batches of arrays '
                         f'with a batch axis {axis}, got {type(first).__name__}')
    return int(shape[axis])


def _join(a, b, axis):
    if isinstance(a, (list, tuple)):
        return type(a)(_join(x, y, axis) for x, y in zip(a, b))
    if isinstance(a, NDArray):
        from .. import nd
        return nd.concat(a, b.as_in_context(a.context), dim=axis)
    return np.concatenate([a, b], axis=axis)


def _cut_last(batch, axis):
    if isinstance(batch, (list, tuple)):
        return type(batch)(_cut_last(x, axis) for x in batch)
    index = (slice(None),) * axis + (slice(0, batch.shape[axis] - 1),)
    return batch[index]
