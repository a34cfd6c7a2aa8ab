"""The input pipeline to a device: DataLoader(pin_memory=True) and prefetch_to_devices (the
next batch copied on a side stream while the current one trains), alone and inside the
Estimator: the batches arrive identical, in order, on the right devices, with one
host-to-device copy per array per batch and no host synchronisation; the consumer's stream
waits for each copy; a loader's position counts only the batches handed out, so
interrupted runs resume exactly."""
import numpy as np
import pytest

import xpnet
from xpnet.backend import context_of, sim, simdevice, simulated
from xpnet.backend.pinned import is_pinned, pinned_allocator
from xpnet.data import ArrayDataset, DataLoader, prefetch_to_devices
from xpnet.estimator import BatchProcessor
from xpnet.handlers import BatchBegin, BatchEnd, CheckpointHandler
from xpnet.utils import split_and_load

from estimator_helpers import make_data, make_estimator, make_loader, params_of

N, BS = 64, 16          # 4 batches per epoch


def _loader(n=40, batch_size=8, **kwargs):
    rng = np.random.RandomState(0)
    x = rng.rand(n, 3, 4).astype(np.float32)
    y = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    return DataLoader(ArrayDataset(x, y), batch_size=batch_size, **kwargs), x, y


_SETS = [('sim', 1), ('sim', 0, 1)] + ([('gpu', 0)] if xpnet.num_gpus() else []) + \
    ([('gpu', 0, 1)] if xpnet.num_gpus() > 1 else [])


@pytest.fixture(params=_SETS, ids=lambda s: s[0] + ''.join(map(str, s[1:])))
def devices(request):
    """One device (sim(1), gpu(0)) or two (sim(0)+sim(1), two GPUs)."""
    kind, *ids = request.param
    return [xpnet.Context(kind, i) for i in ids]


@pytest.mark.parametrize('batch_axis, even_split', [(0, True), (1, False)])
def test_batches_arrive_identical_in_order_on_their_devices(devices, batch_axis, even_split):
    if batch_axis == 1 and len(devices) == 1:
        pytest.skip('one device: nothing is split')
    loader, x, y = _loader(batch_size=10 if even_split else 9)
    expected = list(loader)
    got = list(prefetch_to_devices(loader, devices, batch_axis, even_split))
    assert len(got) == len(expected)
    for batch, ref in zip(got, expected):
        np.testing.assert_array_equal(batch[0].asnumpy(), ref[0].asnumpy())   # host view
        for field, host in zip(batch[:2], ref[:2]):
            assert hasattr(field, '_device_copies')
            parts = split_and_load(host, devices, batch_axis, even_split)
            loaded = split_and_load(field, devices, batch_axis, even_split)
            for got_part, ref_part, c in zip(loaded, parts, devices):
                assert got_part.context == c and context_of(got_part.data) == c
                np.testing.assert_array_equal(got_part.asnumpy(), ref_part.asnumpy())


def test_one_copy_per_array_per_batch_and_no_sync():
    loader, x, y = _loader()
    devices = [sim(0), sim(1)]
    with simulated.counting() as c, simulated.allow_synchronize(False):
        batches = list(prefetch_to_devices(loader, devices))
        for batch in batches:            # loading them as the BatchProcessor does: no copy
            split_and_load(batch[0], devices)
            split_and_load(batch[1], devices)
    assert c.htod == 2 * len(devices) * len(loader) and c.syncs == 0 and c.kernels == 0


def test_split_and_load_copies_again_for_another_split():
    loader, x, y = _loader()
    batch = next(iter(prefetch_to_devices(loader, sim(1))))
    with simulated.counting() as c:
        parts = split_and_load(batch[0], [sim(0), sim(1)])      # not what was copied ahead
    assert c.htod == 2 and [p.context for p in parts] == [sim(0), sim(1)]


class _StreamLog:
    """Records the simulated streams' records and waits, in order."""

    def __init__(self, monkeypatch):
        self.log = []
        record, wait = simdevice.Stream.record, simdevice.Stream.wait_event
        log = self.log

        def spy_record(stream, event=None):
            event = record(stream, event)
            log.append(('record', stream, event))
            return event

        def spy_wait(stream, event):
            log.append(('wait', stream, event))
            return wait(stream, event)
        monkeypatch.setattr(simdevice.Stream, 'record', spy_record)
        monkeypatch.setattr(simdevice.Stream, 'wait_event', spy_wait)


def test_the_compute_stream_waits_for_each_copy_and_the_copy_for_queued_work(monkeypatch):
    spy = _StreamLog(monkeypatch)
    loader, x, y = _loader(n=24)
    it = prefetch_to_devices(loader, sim(1))
    seen = []
    for batch in it:
        seen.append(list(spy.log))
        spy.log.clear()
    null = simdevice.Stream.null
    first, later = seen[0], seen[1:]
    # batch 1: its copies and those of batch 2 were started, each after the side stream
    # waited for the compute stream's queued work; then the compute stream waited for batch 1
    side = first[1][1]
    assert side is not null and not side.is_null
    assert [(k, s is null) for k, s, _ in first] == [
        ('record', True), ('wait', False), ('record', False),
        ('record', True), ('wait', False), ('record', False), ('wait', True)]
    assert first[-1][2] is first[2][2]              # batch 1's event
    for log, prev in zip(later, seen):     # batch k+1's copy started; then wait for batch k
        assert log[-1][0] == 'wait' and log[-1][1] is null
        assert prev[-2][:2] == ('record', side) and log[-1][2] is prev[-2][2]
    assert [len(log) for log in seen] == [7, 4, 1]


def test_a_loaders_position_counts_only_the_batches_handed_out():
    loader, x, y = _loader(n=40, batch_size=8, shuffle=True)
    taken = []
    for i, batch in enumerate(prefetch_to_devices(loader, sim(1))):
        taken.append(batch[1].asnumpy()[:, 0] // 2)
        assert loader.state_dict()['batch_sampler']['batches_done'] == i + 1
        if i == 1:
            break
    state = loader.state_dict()
    assert state['batch_sampler']['batches_done'] == 2
    rest = list(loader)                        # a new pass of the loader: a new epoch
    other, _, _ = _loader(n=40, batch_size=8, shuffle=True)
    other.load_state_dict(state)
    resumed = [b[1].asnumpy()[:, 0] // 2 for b in other]
    full = taken + resumed
    assert len(full) == 5 and sorted(np.concatenate(full).tolist()) == list(range(40))
    assert len(rest) == 5


def test_cpu_contexts_pass_batches_through():
    loader, x, y = _loader()
    batches = list(prefetch_to_devices(loader, [xpnet.cpu(0), xpnet.cpu(1)]))
    assert all(not hasattr(b[0], '_device_copies') for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[0].asnumpy() for b in batches]), x)


def test_batches_that_are_not_host_arrays_pass_through():
    batches = [('a', 1), [xpnet.nd.ones((2, 2), ctx=sim(1)), 0]]
    out = list(prefetch_to_devices(batches, sim(1)))
    assert out[0] is batches[0] and out[1] is batches[1]


# ---- pinned memory -----------------------------------------------------------------------------

@pytest.mark.parametrize('workers', [0, 2])
def test_pin_memory_gives_pinned_batches_with_the_same_values(workers):
    pinned, x, y = _loader(pin_memory=True, pin_device_id=sim(0), num_workers=workers)
    plain, _, _ = _loader()
    for a, b in zip(pinned, plain):
        assert is_pinned(a[0].data) and is_pinned(a[1].data)
        assert a[0].context == xpnet.cpu(0) and a[0].dtype == b[0].dtype
        np.testing.assert_array_equal(a[0].asnumpy(), b[0].asnumpy())
        np.testing.assert_array_equal(a[1].asnumpy(), b[1].asnumpy())
    assert not is_pinned(b[0].data)


def test_pin_memory_without_a_gpu_does_nothing_and_checks_its_device():
    if xpnet.num_gpus():
        pytest.skip('this machine has a GPU')
    loader, _, _ = _loader(pin_memory=True)
    assert not is_pinned(next(iter(loader))[0].data)
    assert pinned_allocator(xpnet.cpu()) is None and pinned_allocator(0) is None
    for bad in (-1, 'gpu', 1.5):
        with pytest.raises(ValueError, match='pin_device_id'):
            _loader(pin_memory=True, pin_device_id=bad)


@pytest.mark.skipif(xpnet.num_gpus() == 0, reason='needs a GPU')
def test_pin_memory_on_a_gpu_pins_through_cupy():
    loader, _, _ = _loader(pin_memory=True)
    batch = next(iter(loader))
    assert is_pinned(batch[0].data)
    got = list(prefetch_to_devices(loader, xpnet.gpu(0)))
    np.testing.assert_array_equal(split_and_load(got[0][0], xpnet.gpu(0))[0].asnumpy(),
                                  batch[0].asnumpy())


# ---- inside the Estimator -------------------------------------------------------------------

class _Seen(BatchBegin, BatchEnd):
    def __init__(self):
        self.preloaded, self.syncs = [], []

    def batch_begin(self, est, *args, **kwargs):
        self.preloaded.append(hasattr(kwargs['batch'][0], '_device_copies'))

    def batch_end(self, est, *args, **kwargs):
        self.syncs.append(simulated.sync_count())


def _fit(ctx, processor=None, loader_kwargs=None):
    xpnet.random.seed(5)
    x, y = make_data(n=N, seed=3)
    est = make_estimator(ctx=ctx, optimizer='adam', lr=0.02, batch_processor=processor)
    seen = _Seen()
    est.fit(make_loader(x, y, batch_size=BS, shuffle=True, **(loader_kwargs or {})),
            epochs=2, event_handlers=[seen])
    return est, seen


@pytest.mark.parametrize('contexts', [[sim(1)], [sim(0), sim(1)]], ids=['sim1', 'sim01'])
def test_the_estimator_trains_the_same_with_batches_copied_ahead(contexts):
    est, seen = _fit(contexts, loader_kwargs={'pin_memory': True, 'pin_device_id': sim(0)})
    assert all(seen.preloaded) and len(seen.preloaded) == 8
    plain, plain_seen = _fit(contexts, processor=_OwnBatchProcessor())
    assert not any(plain_seen.preloaded)       # a custom fit_batch gets the loader's batches
    # copying ahead adds no host synchronisation to a step, and changes no number
    assert np.diff(seen.syncs).tolist() == np.diff(plain_seen.syncs).tolist()
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(plain.net)[k], err_msg=k)
    ref, ref_seen = _fit(xpnet.cpu())
    assert not any(ref_seen.preloaded)
    for k, v in params_of(est.net).items():
        np.testing.assert_allclose(v, params_of(ref.net)[k], rtol=1e-5, atol=1e-6, err_msg=k)


class _OwnBatchProcessor(BatchProcessor):
    def fit_batch(self, estimator, train_batch, batch_axis=0):
        return super().fit_batch(estimator, train_batch, batch_axis)


def test_evaluate_copies_ahead_too():
    est = make_estimator(ctx=sim(1))
    val = make_loader(*make_data(n=N, seed=3), batch_size=BS)
    seen = _Seen()
    on_device = est.evaluate(val, event_handlers=[seen])
    assert all(seen.preloaded) and len(seen.preloaded) == 4
    host = make_estimator(ctx=xpnet.cpu())
    for p, q in zip(host.net.collect_params().values(), est.net.collect_params().values()):
        p.set_data(q.data(sim(1)).asnumpy())
    ref = host.evaluate(val)
    for k in ref:
        assert on_device[k] == pytest.approx(ref[k], rel=1e-6), k


class _Crash(BatchEnd):
    def __init__(self, at):
        self.at = at

    def batch_end(self, est, *args, **kwargs):
        if est.progress.batches == self.at:
            raise KeyboardInterrupt(f'crash after batch {self.at}')


@pytest.mark.parametrize('period, crash, resumed_from', [
    (3, 8, 'model-epoch1batch6'),       # mid-epoch, the next batch already read ahead
    (4, 6, 'model-epoch0batch4'),       # the epoch's last batch: the loader had finished
])
def test_interrupted_runs_resume_exactly_with_batches_copied_ahead(tmp_path, ctx, period,
                                                                   crash, resumed_from):
    def setup(seed=7):
        xpnet.random.seed(seed)
        x, y = make_data(n=N, seed=3)
        est = make_estimator(ctx=ctx, dropout=0.3, optimizer='adam', lr=0.02)
        return est, make_loader(x, y, batch_size=BS, shuffle=True)

    ref, train = setup()
    order = _Labels()
    ref.fit(train, epochs=3, event_handlers=[order])
    est, train = setup()
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, epochs=3, event_handlers=[
            CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=period),
            _Crash(crash)])
    est, train = setup(seed=1234)
    resumed_order = _Labels()
    handler = CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=period,
                                resume_from_checkpoint=True)
    est.fit(train, epochs=3, event_handlers=[handler, resumed_order])
    assert handler.resumed_from == resumed_from
    done = int(resumed_from.split('batch')[1])
    assert resumed_order.batches == order.batches[done:]
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k], err_msg=k)
    assert est.history.epoch == ref.history.epoch


class _Labels(BatchBegin):
    def __init__(self):
        self.batches = []

    def batch_begin(self, est, *args, **kwargs):
        self.batches.append(kwargs['batch'][1].asnumpy().tolist())
