"""DataLoader: Gluon's argument checks and last_batch modes, background workers (order,
prefetch, errors, early break, timeout), shuffling reproducibility, and resumable iteration."""
import gc
import json
import threading
import time

import numpy as np
import pytest
from conftest import oracle

import xpnet
from xpnet.data import (ArrayDataset, BatchSampler, DataLoader, DataLoaderWorkerError, Dataset,
                        IntervalSampler, RandomSampler, Sampler, SequentialSampler)

REF = oracle('data.npz')


class Counting(Dataset):
    """Sample i is (float32 vector of i, i); records which indices were read."""

    def __init__(self, n, delay=0.0, fail_at=None):
        self.n, self.delay, self.fail_at = n, delay, fail_at
        self.reads = []
        self._lock = threading.Lock()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay * ((i * 7) % 3))     # uneven: later batches may finish first
        if i == self.fail_at:
            raise KeyError(f'corrupt record {i}')
        with self._lock:
            self.reads.append(i)
        return np.full(2, i, np.float32), i


def labels(loader):
    return [b[1].asnumpy().tolist() for b in loader]


def worker_threads():
    return [t for t in threading.enumerate() if t.name.startswith('xpnet-data-worker')]


# ---- arguments -----------------------------------------------------------------------------------
def test_argument_checks_follow_gluon():
    ds = Counting(6)
    bs = BatchSampler(SequentialSampler(6), 2)
    with pytest.raises(ValueError, match='batch_size must be specified'):
        DataLoader(ds)
    with pytest.raises(ValueError, match='shuffle must not be specified if sampler'):
        DataLoader(ds, batch_size=2, shuffle=True, sampler=SequentialSampler(6))
    for kw in (dict(batch_size=2), dict(shuffle=True), dict(sampler=SequentialSampler(6)),
               dict(last_batch='keep')):
        with pytest.raises(ValueError, match='must not be specified if batch_sampler'):
            DataLoader(ds, batch_sampler=bs, **kw)
    with pytest.raises(ValueError, match='last_batch'):
        DataLoader(ds, batch_size=2, last_batch='nope')
    with pytest.raises(ValueError, match='timeout'):
        DataLoader(ds, batch_size=2, timeout=0)
    with pytest.raises(ValueError, match='num_workers'):
        DataLoader(ds, batch_size=2, num_workers=-1)
    # accepted for compatibility
    DataLoader(ds, batch_size=2, pin_memory=True, pin_device_id=1, thread_pool=True,
               try_nopython=True)


def test_len_and_last_batch_modes_over_epochs():
    for mode in ('keep', 'discard', 'rollover'):
        loader = DataLoader(Counting(10), batch_size=3, last_batch=mode)
        flat = []
        for _ in range(3):
            for batch in loader:
                data, label = batch
                assert data.shape == (len(label), 2) and data.dtype == np.float32
                assert label.dtype == np.int64 and data.context == xpnet.cpu(0)
                flat.extend(label.asnumpy().tolist() + [-1])
            flat.append(-2)
        assert flat == REF[f'batch/{mode}'].tolist(), mode
    assert len(DataLoader(Counting(10), batch_size=3)) == 4
    assert len(DataLoader(Counting(10), batch_size=3, last_batch='discard')) == 3


def test_batch_sampler_and_plain_array_datasets():
    loader = DataLoader(np.arange(10), batch_sampler=BatchSampler(IntervalSampler(10, 5), 4))
    assert [b.asnumpy().tolist() for b in loader] == [[0, 5, 1, 6], [2, 7, 3, 8], [4, 9]]
    nd = xpnet.nd.arange(12).reshape(6, 2)
    out = list(DataLoader(nd, batch_size=4))
    assert out[0].shape == (4, 2) and out[1].shape == (2, 2) and out[0].dtype == np.float32


def test_batches_come_back_on_cpu_for_device_data(ctx):
    ds = ArrayDataset(xpnet.nd.ones((5, 3), ctx=ctx), xpnet.nd.arange(5, ctx=ctx))
    for num_workers in (0, 1):
        data, label = next(iter(DataLoader(ds, batch_size=2, num_workers=num_workers)))
        assert data.context == xpnet.cpu(0) and label.context == xpnet.cpu(0)
        assert data.shape == (2, 3) and label.asnumpy().tolist() == [0, 1]


# ---- shuffling -----------------------------------------------------------------------------------
def test_shuffle_is_reproducible_with_xpnet_random_seed():
    def two_epochs():
        loader = DataLoader(Counting(20), batch_size=6, shuffle=True)
        return labels(loader), labels(loader)

    xpnet.random.seed(11)
    a1, a2 = two_epochs()
    xpnet.random.seed(11)
    b1, b2 = two_epochs()
    assert (a1, a2) == (b1, b2) and a1 != a2
    assert sorted(sum(a1, [])) == list(range(20))
    xpnet.random.seed(12)
    assert two_epochs()[0] != a1


# ---- workers -------------------------------------------------------------------------------------
@pytest.mark.parametrize('num_workers,prefetch', [(1, None), (3, None), (2, 0), (2, 5)])
def test_workers_preserve_order(num_workers, prefetch):
    xpnet.random.seed(2)
    ref = labels(DataLoader(Counting(23), batch_size=4, shuffle=True))
    xpnet.random.seed(2)
    ds = Counting(23, delay=0.001)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=num_workers,
                        prefetch=prefetch)
    assert labels(loader) == ref
    assert not worker_threads()


def test_prefetch_bounds_the_batches_loaded_ahead():
    ds = Counting(40)
    it = iter(DataLoader(ds, batch_size=2, num_workers=2, prefetch=3))
    next(it)
    deadline = time.time() + 10
    while len(ds.reads) < 8 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    # the consumed batch plus `prefetch` more, and no further
    assert len(ds.reads) == 2 * (1 + 3)
    it.close()


def test_worker_error_names_batch_and_sample_and_chains_original():
    ds = Counting(20, fail_at=9)
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    got = []
    with pytest.raises(DataLoaderWorkerError, match=r'batch 2 .*sample index 9.*corrupt record 9') \
            as info:
        for _, label in loader:
            got.append(label.asnumpy().tolist())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7]]           # earlier batches arrived in order
    assert isinstance(info.value.__cause__, KeyError)
    assert not worker_threads()


def test_batchify_error_in_worker_names_the_batch():
    def bad_batchify(samples):
        raise TypeError('cannot collate')

    loader = DataLoader(Counting(6), batch_size=3, num_workers=1, batchify_fn=bad_batchify)
    with pytest.raises(DataLoaderWorkerError, match=r'batch 0 .*sample indices \[0, 1, 2\]'):
        next(iter(loader))


def test_without_workers_errors_propagate_unchanged():
    with pytest.raises(KeyError, match='corrupt record 2'):
        list(DataLoader(Counting(6, fail_at=2), batch_size=2))


def test_early_break_does_not_leak_threads():
    before = threading.active_count()
    loader = DataLoader(Counting(200, delay=0.0005), batch_size=4, num_workers=3)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    gc.collect()
    assert not worker_threads() and threading.active_count() == before
    it = iter(loader)
    next(it)
    assert len(worker_threads()) == 3
    del it
    gc.collect()
    assert not worker_threads()


def test_timeout_raises_a_clear_error():
    class Slow(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            time.sleep(0.5)
            return i

    loader = DataLoader(Slow(), batch_size=2, num_workers=1, timeout=0.05)
    with pytest.raises(TimeoutError, match=r'batch 0 .*timeout=0.05'):
        next(iter(loader))


def test_timeout_does_not_wait_for_stuck_workers_and_they_stop():
    """The error comes at about ``timeout`` even while every worker is stuck inside a
    sample (it used to wait 10 s per worker); once released they exit, loading nothing
    more."""
    release, entered = threading.Event(), []

    class Stuck(Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            entered.append(i)
            release.wait(60)
            return i

    before = set(worker_threads())
    loader = DataLoader(Stuck(), batch_size=4, num_workers=2, timeout=0.2)
    outcome = []

    def consume():
        try:
            next(iter(loader))
        except TimeoutError as err:
            outcome.append(err)
    consumer = threading.Thread(target=consume)
    consumer.start()
    consumer.join(10)           # a generous hang guard, not a timing measurement
    stuck = [t for t in worker_threads() if t not in before]
    release.set()
    assert not consumer.is_alive() and isinstance(outcome[0], TimeoutError)
    assert len(stuck) == 2
    for t in stuck:
        t.join(10)
    assert not any(t.is_alive() for t in stuck)
    assert len(entered) == 2    # each worker finished its one sample and loaded no more


# ---- resumable iteration -------------------------------------------------------------------------
def make_loader(ds, mode, num_workers, shuffle=True):
    return DataLoader(ds, batch_size=3, shuffle=shuffle, last_batch=mode,
                      num_workers=num_workers)


@pytest.mark.parametrize('mode', ['keep', 'discard', 'rollover'])
@pytest.mark.parametrize('num_workers', [0, 2])
@pytest.mark.parametrize('k', [0, 2, 3])
def test_resume_mid_epoch_equals_uninterrupted_run(mode, num_workers, k):
    xpnet.random.seed(8)
    ref_loader = make_loader(Counting(11), mode, 0)
    ref = [labels(ref_loader) for _ in range(4)]

    xpnet.random.seed(8)
    loader = make_loader(Counting(11), mode, num_workers)
    assert labels(loader) == ref[0]
    assert labels(loader) == ref[1]                       # rollover remainder now pending
    it = iter(loader)
    head = [next(it)[1].asnumpy().tolist() for _ in range(k)]
    assert head == ref[2][:k]
    saved = json.dumps({'loader': loader.state_dict(), 'rng': xpnet.random.get_state()})
    del it

    xpnet.random.seed(1234)                               # as in a new process
    ds = Counting(11)
    fresh = make_loader(ds, mode, num_workers)
    state = json.loads(saved)
    fresh.load_state_dict(state['loader'])
    xpnet.random.set_state(state['rng'])
    assert labels(fresh) == ref[2][k:]
    assert sorted(ds.reads) == sorted(sum(ref[2][k:], []))   # skipped samples never read
    assert labels(fresh) == ref[3]


def test_state_counts_only_batches_given_to_the_consumer():
    loader = DataLoader(Counting(30), batch_size=2, num_workers=2, prefetch=4)
    it = iter(loader)
    next(it)
    next(it)
    time.sleep(0.05)
    assert loader.state_dict()['batch_sampler']['batches_done'] == 2
    it.close()


def test_state_between_epochs_and_after_finished_epoch():
    loader = DataLoader(Counting(10), batch_size=4, last_batch='rollover')
    labels(loader)
    state = json.loads(json.dumps(loader.state_dict()))
    assert state['batch_sampler']['in_progress'] is False
    assert state['batch_sampler']['prev'] == [8, 9]
    fresh = DataLoader(Counting(10), batch_size=4, last_batch='rollover')
    fresh.load_state_dict(state)
    assert labels(fresh)[0] == [8, 9, 0, 1]


def test_state_when_all_batches_consumed_but_iterator_not_exhausted():
    loader = DataLoader(Counting(6), batch_size=3, last_batch='keep')
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    fresh = DataLoader(Counting(6), batch_size=3)
    fresh.load_state_dict(state)
    assert labels(fresh) == []                            # the epoch was complete
    assert labels(fresh) == [[0, 1, 2], [3, 4, 5]]


def test_resume_compact_state_for_random_sampler():
    loader = DataLoader(Counting(10_000), batch_size=100, shuffle=True)
    it = iter(loader)
    next(it)
    assert len(json.dumps(loader.state_dict())) < 600    # rng state, not the permutation
    it.close()


class ShuffledBatches(Sampler):
    """A user batch sampler without state: batches drawn with NumPy's global stream."""

    def __init__(self, n, size):
        self.n, self.size = n, size

    def __iter__(self):
        perm = np.random.permutation(self.n)
        return iter([perm[i:i + self.size] for i in range(0, self.n, self.size)])

    def __len__(self):
        return (self.n + self.size - 1) // self.size


def test_resume_with_a_stateless_user_batch_sampler():
    np.random.seed(3)
    ref = labels(DataLoader(Counting(10), batch_sampler=ShuffledBatches(10, 3)))
    np.random.seed(3)
    loader = DataLoader(Counting(10), batch_sampler=ShuffledBatches(10, 3))
    it = iter(loader)
    next(it)
    state = json.loads(json.dumps(loader.state_dict()))
    fresh = DataLoader(Counting(10), batch_sampler=ShuffledBatches(10, 3))
    fresh.load_state_dict(state)
    assert labels(fresh) == ref[1:]
    assert len(labels(fresh)) == 4


def test_resume_with_interval_sampler_and_load_errors():
    ds = Counting(12)
    loader = DataLoader(ds, batch_size=4, sampler=IntervalSampler(12, 3), last_batch='discard')
    ref = labels(loader)
    it = iter(loader)
    next(it)
    fresh = DataLoader(ds, batch_size=4, sampler=IntervalSampler(12, 3), last_batch='discard')
    fresh.load_state_dict(loader.state_dict())
    assert labels(fresh) == ref[1:]
    with pytest.raises(ValueError, match="key 'batch_sampler'"):
        fresh.load_state_dict({'position': 3})
    with pytest.raises(ValueError, match='batch_size=4'):
        DataLoader(ds, batch_size=5).load_state_dict(loader.state_dict())


def test_random_sampler_given_explicitly_resumes_too():
    xpnet.random.seed(0)
    ref = labels(DataLoader(Counting(9), batch_size=2, sampler=RandomSampler(9)))
    xpnet.random.seed(0)
    loader = DataLoader(Counting(9), batch_size=2, sampler=RandomSampler(9))
    it = iter(loader)
    next(it), next(it)
    fresh = DataLoader(Counting(9), batch_size=2, sampler=RandomSampler(9))
    fresh.load_state_dict(json.loads(json.dumps(loader.state_dict())))
    assert labels(fresh) == ref[2:]


def test_state_from_a_loader_with_another_sampler_is_refused():
    shuffled = DataLoader(Counting(8), batch_size=2, shuffle=True)
    it = iter(shuffled)
    next(it)
    sequential = DataLoader(Counting(8), batch_size=2)
    with pytest.raises(ValueError, match='SequentialSampler has a fixed order'):
        sequential.load_state_dict(shuffled.state_dict())
    assert labels(sequential) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    it = iter(sequential)
    next(it)
    with pytest.raises(ValueError, match='expected a RandomSampler state'):
        DataLoader(Counting(8), batch_size=2, shuffle=True).load_state_dict(
            sequential.state_dict())
