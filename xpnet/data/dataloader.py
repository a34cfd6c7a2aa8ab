"""DataLoader: mini-batches from a dataset, optionally loaded by background threads, resumable.

Gluon 1.9's ``gluon.data.DataLoader`` with the same arguments and checks, plus
``state_dict()`` / ``load_state_dict()`` so a checkpoint can continue an epoch where it
stopped (same order, next batch) without loading the samples it skips.

Background loading (``num_workers > 0``) uses threads, whatever ``thread_pool`` says:
they share the dataset without pickling, start instantly, work with CuPy, and the
NumPy copies and stacking they do release the GIL, so loading overlaps the training
step's NumPy/BLAS work. Pure-Python per-sample transforms are serialized by the GIL;
a dataset read by several workers must tolerate concurrent ``__getitem__`` calls.

Example::

    loader = DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True, last_batch='rollover')
    for data, label in loader:
        ...
    state = loader.state_dict()     # JSON-serializable; put it in a checkpoint
"""
import copy
import functools
import queue
import threading
import time

import numpy as np

from ..backend import cpu, to_host
from ..backend.pinned import pinned_allocator
from ..ndarray import NDArray, _wrap
from . import sampler as _sampler
from .dataset import _gather_array

__all__ = ['DataLoader', 'default_batchify_fn', 'DataLoaderWorkerError']


class DataLoaderWorkerError(RuntimeError):
    """A background worker failed to load a batch; ``__cause__`` is the original error."""


def _stack_error(arrays, err):
    shapes = sorted({tuple(a.shape) for a in arrays})
    return ValueError(f'default_batchify_fn: cannot stack samples of different shapes '
                      f'{shapes[:4]}; pad them or pass a batchify_fn ({err})')


def _stack(arrays):
    try:
        return np.stack(arrays)
    except ValueError as err:
        raise _stack_error(arrays, err) from None


def _is_structured(sample):
    """A list sample holding arrays or nested records is batched field by field."""
    return any(isinstance(x, (NDArray, np.ndarray, tuple, list, dict)) for x in sample)


def default_batchify_fn(data):
    """Collate a list of samples into a batch on cpu(0).

    - NDArrays and NumPy arrays are stacked along a new first axis, keeping their dtype.
    - Numbers become a 1-D NDArray: NumPy scalars keep their dtype, Python ints give
      int64, bools bool, and Python floats **float32** (Gluon gives float64 there; float32
      is xpnet's default for untyped float input, as ``xpnet.array``).
    - Tuples (and lists holding arrays or records) are batched field by field into a
      list, recursively: ``(data, label)`` samples give ``[data_batch, label_batch]``.
      Lists of plain numbers are treated as arrays, as in Gluon. Dicts give a dict.
    - Strings and other objects are returned as the list of samples.
    """
    first = data[0]
    if isinstance(first, NDArray):
        return _wrap(_stack([to_host(d.data) for d in data]), cpu(0))
    if isinstance(first, np.ndarray):
        return _wrap(_stack(data), cpu(0))
    if isinstance(first, tuple) or (isinstance(first, list) and _is_structured(first)):
        if any(len(d) != len(first) for d in data):
            raise ValueError('default_batchify_fn: samples have different numbers of fields: '
                             f'{sorted({len(d) for d in data})}')
        return [default_batchify_fn(list(field)) for field in zip(*data)]
    if isinstance(first, dict):
        return {k: default_batchify_fn([d[k] for d in data]) for k in first}
    try:
        arr = np.asarray(data)
    except ValueError as err:
        raise ValueError(f'default_batchify_fn: samples have different shapes ({err}); pad '
                         'them or pass a batchify_fn') from None
    if arr.dtype.kind not in 'biufc':
        return list(data)
    if arr.dtype == np.float64 and not isinstance(first, np.generic):
        arr = arr.astype(np.float32)
    return _wrap(arr, cpu(0))


_UNRESOLVED = object()


def _pin(batch, alloc):
    """``batch`` with its host arrays copied into pinned memory (same structure and types)."""
    if isinstance(batch, NDArray):
        if batch.context.device_type != 'cpu':
            return batch
        return _wrap(_pin(batch._data, alloc), batch.context)
    if isinstance(batch, np.ndarray):
        if batch.dtype.kind not in 'biufc' or batch.size == 0:
            return batch
        out = alloc(batch.shape, batch.dtype)
        np.copyto(out, batch)
        return out
    if isinstance(batch, (list, tuple)) and not hasattr(batch, '_fields'):
        return type(batch)(_pin(b, alloc) for b in batch)
    if isinstance(batch, dict):
        return {k: _pin(v, alloc) for k, v in batch.items()}
    return batch


class _SampleError(Exception):
    """Which sample of a batch failed (raised from the original error)."""

    def __init__(self, index):
        super().__init__(index)
        self.index = index


class _Cancelled(Exception):
    pass


class DataLoader:
    """Loads a dataset in mini-batches.

    Args:
        dataset: a Dataset, or anything with ``__getitem__`` and ``__len__`` (NumPy arrays,
            NDArrays, lists).
        batch_size: samples per batch (required unless ``batch_sampler`` is given).
        shuffle: visit the samples in a new random order each epoch (drawn from
            ``xpnet.random``). Not with ``sampler``.
        sampler: a Sampler of sample indices. Not with ``shuffle``.
        last_batch: ``'keep'`` (default), ``'discard'`` or ``'rollover'`` for an incomplete
            last batch (rollover carries its samples into the next epoch).
        batch_sampler: a sampler of lists of indices; excludes ``batch_size``, ``shuffle``,
            ``sampler`` and ``last_batch``.
        batchify_fn: collates a list of samples into a batch; default
            :func:`default_batchify_fn`.
        num_workers: background worker threads (0: load in the consumer's thread).
        pin_memory: return batches in page-locked ("pinned") host memory, from which the
            copy to a GPU is asynchronous (the Estimator copies the next batch while the
            current one trains). Batches stay cpu(0) NDArrays. Without a GPU on this
            machine it does nothing (there is nothing to copy to).
        pin_device_id: the GPU whose driver pins the memory (an ordinal; a Context also
            works, e.g. ``xpnet.backend.sim(0)``, the simulated device's stand-in).
        prefetch: batches loaded ahead when ``num_workers > 0`` (default ``2*num_workers``,
            at least 1).
        thread_pool: accepted for Gluon compatibility; workers are always threads.
        timeout: seconds to wait for a batch from the workers before raising TimeoutError
            (the workers are then told to stop; one blocked inside a sample's
            ``__getitem__`` exits as soon as that call returns, since threads cannot be
            interrupted).
        try_nopython: accepted for Gluon 2 compatibility; ignored.
        auto_reload: accepted for Gluon 1.x compatibility (prefetching right after a pass);
            xpnet starts loading a pass when it is iterated.

    Iterating yields batches on cpu(0) in order. A failing sample raises its error
    directly with ``num_workers=0``, and a :class:`DataLoaderWorkerError` naming the batch
    and the sample (chained to the original error) with workers, after stopping them.
    Leaving a loop early stops the workers when the iterator is closed or collected.

    Example::

        loader = DataLoader(ArrayDataset(x, y), batch_size=64, shuffle=True)
        for data, label in loader:
            ...
    """

    def __init__(self, dataset, batch_size=None, shuffle=False, sampler=None, last_batch=None,
                 batch_sampler=None, batchify_fn=None, num_workers=0, pin_memory=False,
                 pin_device_id=0, prefetch=None, thread_pool=False, timeout=120,
                 try_nopython=None, auto_reload=False):
        self._dataset = dataset
        if batch_sampler is None:
            if batch_size is None:
                raise ValueError('DataLoader: batch_size must be specified unless batch_sampler '
                                 'is specified')
            if sampler is None:
                sampler = (_sampler.RandomSampler(len(dataset)) if shuffle
                           else _sampler.SequentialSampler(len(dataset)))
            elif shuffle:
                raise ValueError('DataLoader: shuffle must not be specified if sampler is '
                                 'specified (shuffle with a RandomSampler instead)')
            batch_sampler = _sampler.BatchSampler(sampler, batch_size,
                                                  last_batch if last_batch else 'keep')
        elif batch_size is not None or shuffle or sampler is not None or last_batch is not None:
            raise ValueError('DataLoader: batch_size, shuffle, sampler and last_batch must not be '
                             'specified if batch_sampler is specified')
        self._batch_sampler = batch_sampler
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
                or num_workers < 0:
            raise ValueError(f'DataLoader: num_workers must be an integer >= 0, got '
                             f'{num_workers!r}')
        if not timeout > 0:
            raise ValueError(f'DataLoader: timeout must be positive, got {timeout!r}')
        self._num_workers = int(num_workers)
        self._prefetch = max(0, int(prefetch) if prefetch is not None else 2 * self._num_workers)
        self._timeout = timeout
        self._pin_memory = bool(pin_memory)
        self._pin_device_id = pin_device_id
        self._pin_alloc = _UNRESOLVED   # the pinned allocator, found at the first batch
        if self._pin_memory:
            pinned_allocator(pin_device_id, check_only=True)
        self._thread_pool = thread_pool
        self._batchify_fn = default_batchify_fn if batchify_fn is None else batchify_fn
        # Vectorized batches for array-backed datasets (exactly the default per-sample result).
        self._gather = None
        if batchify_fn is None:
            if isinstance(dataset, (np.ndarray, NDArray)):
                self._gather = functools.partial(_gather_array, dataset)
            elif callable(getattr(dataset, '_gather', None)):
                self._gather = dataset._gather
        # A batch sampler without a compact state has its epochs materialized (index lists).
        get_state = getattr(batch_sampler, 'state_dict', None)
        self._stateful = callable(get_state) and get_state() is not None
        self._progress = None        # the latest iteration's _Progress
        self._resume = None          # loaded state of a materialized epoch to continue

    def __len__(self):
        """The number of batches in an epoch."""
        return len(self._batch_sampler)

    def __iter__(self):
        return _LoaderIter(self)

    # ---- loading ---------------------------------------------------------------------------
    def _load(self, indices, stop=None):
        """The batch of ``indices`` (in pinned memory with ``pin_memory``)."""
        batch = self._load_batch(indices, stop)
        if self._pin_memory:
            alloc = self._pin_alloc
            if alloc is _UNRESOLVED:
                alloc = self._pin_alloc = pinned_allocator(self._pin_device_id)
            if alloc is not None:
                batch = _pin(batch, alloc)
        return batch

    def _load_batch(self, indices, stop):
        """The batch of ``indices``. In a worker (``stop`` given) a failing sample raises
        ``_SampleError`` naming it, and a set ``stop`` abandons the batch."""
        if self._gather is not None:
            batch = self._gather(indices)
            if batch is not NotImplemented:
                return batch
        dataset = self._dataset
        if stop is None:   # the consumer's thread: errors propagate unchanged, as in Gluon
            return self._batchify_fn([dataset[i] for i in indices])
        samples = []
        for i in indices:
            if stop.is_set():
                raise _Cancelled()
            try:
                samples.append(dataset[i])
            except Exception as err:
                raise _SampleError(i) from err
        return self._batchify_fn(samples)

    def _start_epoch(self):
        """(batches iterator, epoch start state, batches already done) for a new iteration."""
        if self._stateful:
            batches = iter(self._batch_sampler)
            start = self._batch_sampler.state_dict()
            return batches, start, start.get('batches_done', 0)
        resume, self._resume = self._resume, None
        if resume is not None:
            order, done = resume['batches'], resume['batches_done']
        else:
            order = [[_sampler._pyint(i) for i in b] for b in self._batch_sampler]
            done = 0
        start = {'in_progress': True, 'batches': order, 'batches_done': done}
        return iter(order[done:]), start, done

    # ---- checkpointing ---------------------------------------------------------------------
    def state_dict(self):
        """A JSON-serializable snapshot of the iteration position.

        During an epoch: the epoch's order (the samplers' states at its start, including
        the rollover remainder carried into it) and the number of batches already yielded
        to the consumer (batches loaded ahead, by workers or by the Estimator's device
        prefetcher, do not count). Between epochs: the remainder
        waiting for the next epoch. Save ``xpnet.random.get_state()`` with it to make the
        following epochs' shuffles match too.
        """
        progress = self._progress
        if progress is not None and not progress.finished:
            inner = dict(progress.start, batches_done=progress.done - progress.ahead)
        elif self._stateful:
            inner = self._batch_sampler.state_dict()
        else:
            inner = dict(self._resume) if self._resume is not None else {'in_progress': False}
        return {'batch_sampler': copy.deepcopy(inner)}   # callers may edit it freely

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s snapshot: the next ``iter(loader)`` continues that
        epoch from the batch after the last one yielded, in the same order."""
        if not isinstance(state, dict) or 'batch_sampler' not in state:
            raise ValueError("DataLoader.load_state_dict: expected a dict from "
                             f"DataLoader.state_dict() (with key 'batch_sampler'), got {state!r}")
        inner = state['batch_sampler']
        self._progress = None
        if self._stateful:
            self._batch_sampler.load_state_dict(inner)
        elif inner.get('in_progress'):
            if 'batches' not in inner:
                raise ValueError('DataLoader.load_state_dict: the state does not come from a '
                                 'loader with the same kind of batch sampler')
            self._resume = {'in_progress': True, 'batches': inner['batches'],
                            'batches_done': int(inner['batches_done'])}
        else:
            self._resume = None


class _Progress:
    """Where the latest iteration of a loader is: shared by the loader and its iterator.
    ``ahead``: batches the consumer has read but not used yet (a device prefetcher)."""
    __slots__ = ('start', 'done', 'finished', 'ahead')

    def __init__(self, start, done):
        self.start, self.done, self.finished, self.ahead = start, done, False, 0


class _LoaderIter:
    """One pass over a DataLoader; owns its worker threads (if any)."""

    def __init__(self, loader):
        self._loader = loader
        self._batches, start, done = loader._start_epoch()
        self._progress = loader._progress = _Progress(start, done)
        self._first = done            # epoch position of the first batch of this pass
        self._workers = None
        self._closed = False
        if loader._num_workers > 0:
            self._workers = _Workers(loader._load, loader._num_workers)
            self._inflight = max(1, loader._prefetch)
            self._sent = self._received = 0
            self._pending = {}         # sequence number -> sample indices, for error messages
            self._exhausted = False
            self._fill()

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        if self._workers is None:
            try:
                indices = next(self._batches)
            except StopIteration:
                self._finish()
                raise
            batch = self._loader._load(indices)
            self._progress.done += 1
            return batch
        return self._next_from_workers()

    def _fill(self):
        while not self._exhausted and self._sent - self._received < self._inflight:
            try:
                indices = next(self._batches)
            except StopIteration:
                self._exhausted = True
                break
            except BaseException:   # a failing (user) batch sampler: stop the workers too
                self.close()
                raise
            self._pending[self._sent] = indices
            self._workers.submit(self._sent, indices)
            self._sent += 1

    def _next_from_workers(self):
        self._fill()
        if self._received == self._sent:
            self._finish()
            raise StopIteration
        seq = self._received
        position = self._first + seq
        try:
            ok, value = self._workers.result(seq, self._loader._timeout)
        except TimeoutError:
            self.close(wait=False)      # a worker stuck in a sample must not delay the error
            raise TimeoutError(f'DataLoader: batch {position} of the epoch was not loaded within '
                               f'timeout={self._loader._timeout} s; raise `timeout` for slow '
                               'datasets') from None
        indices = self._pending.pop(seq)
        self._received += 1
        if not ok:
            self.close()
            if isinstance(value, _SampleError):
                err, where = value.__cause__, f'sample index {value.index!r}'
            else:
                err, where = value, f'sample indices {list(indices)[:8]}'
            raise DataLoaderWorkerError(
                f'DataLoader worker failed on batch {position} of the epoch ({where}): '
                f'{type(err).__name__}: {err}') from err
        self._progress.done += 1
        self._fill()
        return value

    def _read_ahead(self, n):
        """The consumer holds ``n`` batches it has not used yet: ``state_dict()`` does not
        count them (``xpnet.data.prefetch_to_devices`` reads one batch ahead)."""
        self._progress.ahead = n

    def _finish(self):
        self._progress.finished = True
        self.close()

    def close(self, wait=True):
        """Stop the workers (idempotent); called on exhaustion, error, and collection.

        Each worker stops before its next sample. With ``wait``, wait (at most the
        loader's ``timeout`` in all) for those busy with a sample to finish it.
        """
        if not self._closed:
            self._closed = True
            if self._workers is not None:
                self._workers.shutdown(self._loader._timeout if wait else 0)

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown may have torn down threading already
            pass


class _Workers:
    """Worker threads computing ``load(indices, stop)`` for numbered tasks.

    Results are kept by sequence number so the consumer receives them in order. The
    threads hold no reference to the iterator, so dropping it triggers its shutdown."""

    def __init__(self, load, count):
        self._tasks = queue.SimpleQueue()
        self._results = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=_worker_loop, name=f'xpnet-data-worker-{i}',
                                          args=(load, self._tasks, self._results, self._cond,
                                                self._stop), daemon=True)
                         for i in range(count)]
        for t in self._threads:
            t.start()

    def submit(self, seq, indices):
        self._tasks.put((seq, indices))

    def result(self, seq, timeout):
        with self._cond:
            if not self._cond.wait_for(lambda: seq in self._results, timeout):
                raise TimeoutError
            return self._results.pop(seq)

    def shutdown(self, wait):
        """Tell every worker to stop after its current sample; wait up to ``wait``
        seconds in all for them to do so."""
        self._stop.set()
        for _ in self._threads:
            self._tasks.put(None)
        deadline = time.monotonic() + wait
        for t in self._threads:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if t is not threading.current_thread():
                t.join(timeout=left)


def _worker_loop(load, tasks, results, cond, stop):
    while True:
        task = tasks.get()
        if task is None or stop.is_set():
            return
        seq, indices = task
        try:
            out = (True, load(indices, stop))
        except _Cancelled:
            return
        except BaseException as err:   # handed to the consumer, which re-raises it
            out = (False, err)
        with cond:
            results[seq] = out
            cond.notify_all()
