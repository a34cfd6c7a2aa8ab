"""Samplers: the order in which a DataLoader visits a dataset, and how it groups it into batches.

Gluon 1.9's samplers (``SequentialSampler``, ``RandomSampler``, ``FilterSampler``,
``BatchSampler``, and contrib's ``IntervalSampler``), ``SplitSampler`` (one rank's shard
for data-parallel training), plus a checkpoint protocol:
every sampler has ``state_dict()`` / ``load_state_dict(state)`` (JSON-serializable), so
an interrupted epoch can be continued with the same order (see ``DataLoader.state_dict``).

Sampler state protocol:

- ``Sampler.state_dict()`` describes the order of the epoch last started (for
  ``RandomSampler``: the state of ``xpnet.random``'s stream the permutation was drawn
  from, a few integers). ``load_state_dict(state)`` makes the *next* ``iter(sampler)``
  replay that order; later epochs draw new orders as usual. A sampler whose
  ``state_dict()`` returns None (the base class default, so any user sampler) has no
  compact state: ``BatchSampler`` then records the epoch's index list itself.
- ``BatchSampler.state_dict()`` adds the rollover remainder carried into the epoch and
  the number of batches already yielded; after ``load_state_dict`` the next iteration
  continues from the following batch, skipping the earlier ones without touching the data.

Example::

    sampler = BatchSampler(RandomSampler(10), 3, 'rollover')
    it = iter(sampler); first = next(it)
    state = sampler.state_dict()          # json.dumps(state) works
    other = BatchSampler(RandomSampler(10), 3, 'rollover')
    other.load_state_dict(state)
    list(other) == list(it)               # True: same epoch, from the second batch on
"""
import numpy as np

from .. import random as _random

__all__ = ['Sampler', 'SequentialSampler', 'RandomSampler', 'FilterSampler', 'BatchSampler',
           'IntervalSampler', 'SplitSampler']

_LAST_BATCH = ('keep', 'discard', 'rollover')


def _check_int(value, name, owner, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f'{owner}: {name} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def _pyint(i):
    """Indices as plain Python ints so states and batches stay JSON-serializable."""
    return i.item() if isinstance(i, np.generic) else i


class Sampler:
    """Base class for samplers: subclasses define ``__iter__`` (indices) and ``__len__``.

    ``state_dict()`` returns None here, meaning "no compact state": a ``BatchSampler``
    over such a sampler records each epoch's index list so the epoch can still be resumed.
    """

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def state_dict(self):
        """A JSON-serializable description of the latest epoch's order, or None."""
        return None

    def load_state_dict(self, state):
        """Make the next iteration replay the order described by ``state``."""
        if state:
            raise ValueError(f'{type(self).__name__} has no state to load, got {state!r}')


class _StatelessSampler(Sampler):
    """A sampler whose order never changes: its state is empty."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        if state:
            raise ValueError(f'{type(self).__name__} has a fixed order; the state {sorted(state)} '
                             'comes from another kind of sampler')


class SequentialSampler(_StatelessSampler):
    """Samples ``start, start+1, ..., start+length-1`` in order.

    Args:
        length: number of indices.
        start: the first index.
    """

    def __init__(self, length, start=0):
        self._length = _check_int(length, 'length', 'SequentialSampler')
        self._start = _check_int(start, 'start', 'SequentialSampler')

    def __iter__(self):
        return iter(range(self._start, self._start + self._length))

    def __len__(self):
        return self._length


class RandomSampler(Sampler):
    """Samples ``[0, length)`` in a random order (without replacement), one new order per epoch.

    The order is a permutation drawn from ``xpnet.random`` when iteration starts, so
    ``xpnet.random.seed(n)`` makes it reproducible. ``state_dict()`` holds the stream's
    state that the latest permutation was drawn from (compact, whatever ``length`` is).

    Args:
        length: number of indices.
    """

    def __init__(self, length):
        self._length = _check_int(length, 'length', 'RandomSampler')
        self._epoch_rng = None   # stream state the latest epoch's permutation came from
        self._replay = None      # a loaded state the next epoch must reuse

    def __iter__(self):
        # Drawn eagerly (not in a generator) so state_dict() is valid once iter() returns.
        if self._replay is not None:
            rng_state, self._replay = self._replay, None
            bits = type(_random.generator().bit_generator)()
            bits.state = rng_state
            perm = np.random.Generator(bits).permutation(self._length)
        else:
            rng_state = _random.get_state()
            perm = _random.permutation(self._length)
        self._epoch_rng = rng_state
        return iter(perm.tolist())

    def __len__(self):
        return self._length

    def state_dict(self):
        rng = self._replay if self._replay is not None else self._epoch_rng
        return {'length': self._length, 'rng_state': rng}

    def load_state_dict(self, state):
        if not state or 'rng_state' not in state:
            raise ValueError(f'RandomSampler: expected a RandomSampler state, got {state!r}')
        if state.get('length', self._length) != self._length:
            raise ValueError(f"RandomSampler: the state was saved for length {state['length']}, "
                             f'this sampler has length {self._length}')
        self._replay = state.get('rng_state')


class FilterSampler(_StatelessSampler):
    """Samples the indices of ``dataset`` whose sample makes ``fn`` return True (in order).

    Args:
        fn: a predicate taking one sample.
        dataset: the dataset to filter (read once, at construction).
    """

    def __init__(self, fn, dataset):
        self._fn = fn
        self._dataset = dataset
        self._indices = [i for i in range(len(dataset)) if fn(dataset[i])]

    def __iter__(self):
        return iter(self._indices)

    def __len__(self):
        return len(self._indices)


class IntervalSampler(_StatelessSampler):
    """Samples ``[0, length)`` at a fixed interval: ``0, interval, 2*interval, ...``.

    With ``rollover=True`` it then starts again from the first skipped index (1, then 2,
    ...) until every index was visited once; otherwise it stops after the first pass.
    (Gluon's ``__len__`` returns ``length`` even without rollover; here it is the number
    of indices actually produced.)

    Args:
        length: number of indices.
        interval: step between two consecutive samples; at most ``length``.
        rollover: whether to continue with the skipped indices.

    Example::

        >>> list(IntervalSampler(13, interval=3))
        [0, 3, 6, 9, 12, 1, 4, 7, 10, 2, 5, 8, 11]
        >>> list(IntervalSampler(13, interval=3, rollover=False))
        [0, 3, 6, 9, 12]
    """

    def __init__(self, length, interval, rollover=True):
        self._length = _check_int(length, 'length', 'IntervalSampler')
        self._interval = _check_int(interval, 'interval', 'IntervalSampler', minimum=1)
        if self._interval > self._length:
            raise ValueError(f'IntervalSampler: interval {interval} must be <= length {length}')
        self._rollover = bool(rollover)

    def __iter__(self):
        for start in range(self._interval if self._rollover else 1):
            yield from range(start, self._length, self._interval)

    def __len__(self):
        if self._rollover:
            return self._length
        return len(range(0, self._length, self._interval))


class SplitSampler(Sampler):
    """One part of ``[0, length)``: this rank's shard of the data in data-parallel training.

    Each epoch's order is ``0 .. length-1``, or with ``shuffle=True`` a permutation drawn
    from a generator seeded with ``(seed, epoch)`` (not from ``xpnet.random``), so every
    part agrees on it without communicating. The order is padded by wrapping around (its
    first indices repeat) to a multiple of ``num_parts``, and part ``k`` takes positions
    ``k, k + num_parts, k + 2*num_parts, ...``. Every part therefore has
    ``ceil(length / num_parts)`` indices and every rank runs the same number of steps; at
    most ``num_parts - 1`` samples are seen twice per epoch, each as the last index of a
    part (:attr:`padding` says whether this part has one, e.g. to leave it out of a
    validation metric).

    The epoch counts up by one at each iteration (:meth:`set_epoch` sets it).
    ``state_dict()`` records the epoch last started; after ``load_state_dict`` the next
    iteration replays it. The state does not depend on ``part_index``, so rank 0's state
    restores every rank's sampler.

    Args:
        length: number of indices to split.
        num_parts: number of parts (default: ``xpnet.distributed.size()``).
        part_index: which part this sampler yields (default: ``xpnet.distributed.rank()``).
        shuffle: a new order every epoch.
        seed: seeds the orders; must be the same on every rank.

    Example::

        >>> list(SplitSampler(10, num_parts=3, part_index=2))
        [2, 5, 8, 1]
        >>> loader = DataLoader(dataset, batch_size=32,
        ...                     sampler=SplitSampler(len(dataset), shuffle=True))
    """

    def __init__(self, length, num_parts=None, part_index=None, shuffle=False, seed=0):
        self._length = _check_int(length, 'length', 'SplitSampler')
        if num_parts is None or part_index is None:
            from .. import distributed as dist
            num_parts = dist.size() if num_parts is None else num_parts
            part_index = dist.rank() if part_index is None else part_index
        self._parts = _check_int(num_parts, 'num_parts', 'SplitSampler', minimum=1)
        self._index = _check_int(part_index, 'part_index', 'SplitSampler')
        if self._index >= self._parts:
            raise ValueError(f'SplitSampler: part_index must be < num_parts ({self._parts}), '
                             f'got {part_index}')
        self._shuffle = bool(shuffle)
        self._seed = _check_int(seed, 'seed', 'SplitSampler')
        self._epoch = 0          # the epoch the next iteration starts
        self._started = None     # the epoch last started
        self._replay = None      # a loaded epoch the next iteration replays

    def __iter__(self):
        # Drawn eagerly (not in a generator) so state_dict() is valid once iter() returns.
        epoch = self._epoch if self._replay is None else self._replay
        self._replay = None
        self._started, self._epoch = epoch, epoch + 1
        return iter(self._order(epoch)[self._index::self._parts].tolist())

    def _order(self, epoch):
        """The epoch's padded order, the same for every part."""
        if self._shuffle:
            seq = np.random.SeedSequence([self._seed, epoch])
            order = np.random.Generator(np.random.PCG64(seq)).permutation(self._length)
        else:
            order = np.arange(self._length)
        return np.resize(order, len(self) * self._parts) if self._length else order

    def __len__(self):
        return -(-self._length // self._parts)

    @property
    def padding(self):
        """How many of this part's indices repeat earlier ones (0 or 1, the last one)."""
        extra = len(self) * self._parts - self._length
        return int(self._length > 0 and self._index >= self._parts - extra)

    def set_epoch(self, epoch):
        """Make the next iteration epoch ``epoch`` (its shuffle order)."""
        self._epoch = _check_int(epoch, 'epoch', 'SplitSampler')
        self._replay = None

    def state_dict(self):
        if self._replay is not None:
            epoch = self._replay
        else:
            epoch = self._started if self._started is not None else self._epoch
        return {'length': self._length, 'num_parts': self._parts, 'shuffle': self._shuffle,
                'seed': self._seed, 'epoch': epoch}

    def load_state_dict(self, state):
        if not state or 'epoch' not in state:
            raise ValueError(f'SplitSampler: expected a SplitSampler state, got {state!r}')
        for key, mine in (('length', self._length), ('num_parts', self._parts),
                          ('shuffle', self._shuffle), ('seed', self._seed)):
            if key in state and state[key] != mine:
                raise ValueError(f'SplitSampler: the state was saved with {key}={state[key]!r}, '
                                 f'this sampler has {key}={mine!r}')
        self._replay = _check_int(state['epoch'], 'epoch', 'SplitSampler')


class BatchSampler(Sampler):
    """Groups the indices of another sampler into lists of ``batch_size``.

    Args:
        sampler: the source of indices.
        batch_size: size of a batch.
        last_batch: what to do with a final incomplete batch: ``'keep'`` yields it
            (smaller), ``'discard'`` drops it, ``'rollover'`` carries its indices over to
            the beginning of the next epoch.

    Example::

        >>> list(BatchSampler(SequentialSampler(10), 3, 'keep'))
        [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    """

    def __init__(self, sampler, batch_size, last_batch='keep'):
        self._sampler = sampler
        self._batch_size = _check_int(batch_size, 'batch_size', 'BatchSampler', minimum=1)
        if last_batch not in _LAST_BATCH:
            raise ValueError("BatchSampler: last_batch must be one of 'keep', 'discard' or "
                             f"'rollover', got {last_batch!r}")
        self._last_batch = last_batch
        self._prev = []        # rollover remainder waiting for the next epoch
        self._epoch = None     # state at the start of the epoch in progress
        self._done = 0         # batches of that epoch yielded so far
        self._resume = None    # a loaded in-progress state the next iteration continues

    def __iter__(self):
        # The epoch's order is fixed eagerly so that state_dict() is valid once iter() returns.
        resume, self._resume = self._resume, None
        if resume is not None:
            prev, skip, order = list(resume['prev']), resume['batches_done'], resume['order']
        else:
            prev, skip, order = self._prev, 0, None
        self._prev = []
        sampler_state = None
        if order is None:
            indices = iter(self._sampler)
            get_state = getattr(self._sampler, 'state_dict', None)
            sampler_state = get_state() if get_state is not None else None
            if sampler_state is None:   # no compact state: remember the order itself
                order = [_pyint(i) for i in indices]
        if order is not None:
            indices = iter(order)
        self._epoch = {'prev': list(prev), 'sampler': sampler_state, 'order': order}
        self._done = skip
        return self._batches(prev, indices, skip)

    def _batches(self, batch, indices, skip):
        size, count = self._batch_size, 0
        for i in indices:
            batch.append(i)
            if len(batch) == size:
                count += 1
                if count > skip:
                    self._done = count
                    yield batch
                batch = []
        if batch:
            if self._last_batch == 'keep':
                count += 1
                if count > skip:
                    self._done = count
                    yield batch
            elif self._last_batch == 'rollover':
                self._prev = batch
        self._epoch = None

    def __len__(self):
        n = len(self._sampler)
        if self._last_batch == 'keep':
            return (n + self._batch_size - 1) // self._batch_size
        if self._last_batch == 'discard':
            return n // self._batch_size
        prev = self._resume['prev'] if self._resume is not None else self._prev
        return (len(prev) + n) // self._batch_size

    def state_dict(self):
        """The epoch in progress (its start state and batches yielded), or the rollover
        remainder waiting for the next epoch when none is in progress."""
        base = {'batch_size': self._batch_size, 'last_batch': self._last_batch}
        if self._resume is not None:
            return dict(self._resume, **base)
        if self._epoch is not None:
            return dict(base, in_progress=True, batches_done=self._done, **self._epoch)
        return dict(base, in_progress=False, prev=list(self._prev))

    def load_state_dict(self, state):
        """Restore a state from :meth:`state_dict`: the next iteration continues that epoch
        after its last yielded batch (or starts a new epoch with the saved remainder)."""
        for key, mine in (('batch_size', self._batch_size), ('last_batch', self._last_batch)):
            if key in state and state[key] != mine:
                raise ValueError(f'BatchSampler: the state was saved with {key}={state[key]!r}, '
                                 f'this sampler has {key}={mine!r}')
        self._epoch = None
        if state.get('in_progress'):
            resume = {'in_progress': True, 'prev': list(state['prev']),
                      'sampler': state.get('sampler'), 'order': state.get('order'),
                      'batches_done': int(state['batches_done'])}
            if resume['order'] is None:   # the sampler replays the epoch's order at next iter
                self._sampler.load_state_dict(resume['sampler'])
            self._resume = resume
        else:
            self._resume = None
            self._prev = list(state.get('prev', []))
