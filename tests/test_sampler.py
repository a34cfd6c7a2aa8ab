"""Samplers: Gluon's orders (oracle from MXNet 1.9.1) and the resumable state protocol."""
import json

import numpy as np
import pytest
from conftest import oracle

import xpnet
from xpnet.data import (BatchSampler, FilterSampler, IntervalSampler, RandomSampler, Sampler,
                        SequentialSampler, SimpleDataset)

REF = oracle('data.npz')


def roundtrip(state):
    return json.loads(json.dumps(state))


# ---- IntervalSampler -----------------------------------------------------------------------------
def test_interval_sampler_seed_examples():
    assert list(IntervalSampler(13, interval=3)) == [0, 3, 6, 9, 12, 1, 4, 7, 10, 2, 5, 8, 11]
    assert list(IntervalSampler(13, interval=3, rollover=False)) == [0, 3, 6, 9, 12]


@pytest.mark.parametrize('length,interval,rollover', [(13, 3, True), (13, 3, False),
                                                      (10, 10, True), (7, 1, False), (12, 4, True)])
def test_interval_sampler_matches_gluon(length, interval, rollover):
    got = list(IntervalSampler(length, interval, rollover=rollover))
    assert got == REF[f'interval/{length}_{interval}_{rollover}'].tolist()
    assert len(IntervalSampler(length, interval, rollover)) == len(got)


def test_interval_sampler_errors():
    with pytest.raises(ValueError, match='interval 5 must be <= length 4'):
        IntervalSampler(4, 5)
    with pytest.raises(ValueError, match='interval'):
        IntervalSampler(4, 0)


# ---- simple samplers -----------------------------------------------------------------------------
def test_sequential_sampler_start_and_len():
    s = SequentialSampler(4, start=3)
    assert list(s) == [3, 4, 5, 6] and len(s) == 4
    with pytest.raises(ValueError, match='length'):
        SequentialSampler(-1)


def test_filter_sampler():
    s = FilterSampler(lambda x: x % 3 == 0, SimpleDataset(list(range(10))))
    assert list(s) == [0, 3, 6, 9] and len(s) == 4


def test_random_sampler_is_a_permutation_seeded_by_xpnet_random():
    xpnet.random.seed(3)
    s = RandomSampler(50)
    first, second = list(s), list(s)
    assert sorted(first) == list(range(50)) and first != second
    assert all(type(i) is int for i in first)
    xpnet.random.seed(3)
    assert list(RandomSampler(50)) == first
    xpnet.random.seed(4)
    assert list(RandomSampler(50)) != first


def test_random_sampler_state_replays_epoch_then_continues_from_global_stream():
    xpnet.random.seed(1)
    s = RandomSampler(20)
    e1 = list(s)
    state = roundtrip(s.state_dict())
    after = xpnet.random.get_state()
    e2 = list(s)
    other = RandomSampler(20)
    other.load_state_dict(state)
    xpnet.random.set_state(after)
    assert list(other) == e1          # replayed without touching the global stream
    assert list(other) == e2          # next epoch drawn from the (restored) stream
    with pytest.raises(ValueError, match='length 20'):
        RandomSampler(21).load_state_dict(state)


# ---- BatchSampler --------------------------------------------------------------------------------
def epochs_flat(bs, n=3):
    flat = []
    for _ in range(n):
        for b in bs:
            flat.extend(b + [-1])
        flat.append(-2)
    return flat


@pytest.mark.parametrize('mode', ['keep', 'discard', 'rollover'])
def test_batch_sampler_three_epochs_match_gluon(mode):
    bs = BatchSampler(SequentialSampler(10), 3, mode)
    assert epochs_flat(bs) == REF[f'batch/{mode}'].tolist()


def test_batch_sampler_len():
    assert len(BatchSampler(SequentialSampler(10), 3, 'keep')) == 4
    assert len(BatchSampler(SequentialSampler(10), 3, 'discard')) == 3
    bs = BatchSampler(SequentialSampler(10), 3, 'rollover')
    assert len(bs) == 3
    list(bs)                      # leaves one index for the next epoch
    assert len(bs) == 3
    list(bs)                      # (1 + 10) -> 3 batches, 2 left
    assert len(bs) == 4           # (2 + 10) // 3


def test_batch_sampler_argument_errors():
    with pytest.raises(ValueError, match="last_batch must be one of 'keep', 'discard'"):
        BatchSampler(SequentialSampler(4), 2, 'drop')
    with pytest.raises(ValueError, match='batch_size'):
        BatchSampler(SequentialSampler(4), 0)


def run(bs, epochs):
    return [list(map(list, bs)) for _ in range(epochs)]


@pytest.mark.parametrize('mode', ['keep', 'discard', 'rollover'])
@pytest.mark.parametrize('k', [0, 1, 3, 4])
def test_batch_sampler_resume_mid_epoch(mode, k):
    xpnet.random.seed(5)
    ref_bs = BatchSampler(RandomSampler(11), 3, mode)
    ref = run(ref_bs, 3)

    xpnet.random.seed(5)
    bs = BatchSampler(RandomSampler(11), 3, mode)
    list(bs)                                   # epoch 1
    it = iter(bs)
    got = [next(it) for _ in range(min(k, len(ref[1])))]
    state = roundtrip(bs.state_dict())
    rng = xpnet.random.get_state()
    assert state['in_progress'] and state['batches_done'] == len(got)
    assert got == ref[1][:len(got)]

    xpnet.random.seed(99)                      # a fresh process would have another stream
    fresh = BatchSampler(RandomSampler(11), 3, mode)
    fresh.load_state_dict(state)
    xpnet.random.set_state(rng)
    rest = list(fresh)
    assert rest == ref[1][len(got):]
    assert list(fresh) == ref[2]


def test_batch_sampler_state_between_epochs_holds_rollover_remainder():
    bs = BatchSampler(SequentialSampler(10), 4, 'rollover')
    list(bs)
    state = roundtrip(bs.state_dict())
    assert state['in_progress'] is False and state['prev'] == [8, 9]
    fresh = BatchSampler(SequentialSampler(10), 4, 'rollover')
    fresh.load_state_dict(state)
    assert list(fresh)[0] == [8, 9, 0, 1]


def test_batch_sampler_resume_keeps_remainder_carried_into_epoch():
    bs = BatchSampler(SequentialSampler(10), 4, 'rollover')
    list(bs)                                   # [8, 9] carried over
    it = iter(bs)
    assert next(it) == [8, 9, 0, 1]
    state = roundtrip(bs.state_dict())
    assert state['prev'] == [8, 9] and state['batches_done'] == 1
    fresh = BatchSampler(SequentialSampler(10), 4, 'rollover')
    fresh.load_state_dict(state)
    assert list(fresh) == [[2, 3, 4, 5], [6, 7, 8, 9]]
    assert list(fresh) == [[0, 1, 2, 3], [4, 5, 6, 7]]   # nothing carried, [8, 9] left over


def test_batch_sampler_state_of_loaded_but_unstarted_resume():
    bs = BatchSampler(SequentialSampler(7), 2)
    it = iter(bs)
    next(it)
    state = bs.state_dict()
    fresh = BatchSampler(SequentialSampler(7), 2)
    fresh.load_state_dict(state)
    assert roundtrip(fresh.state_dict()) == roundtrip(state)


def test_batch_sampler_state_mismatch_errors():
    state = BatchSampler(SequentialSampler(7), 2).state_dict()
    with pytest.raises(ValueError, match='batch_size=2'):
        BatchSampler(SequentialSampler(7), 3).load_state_dict(state)
    with pytest.raises(ValueError, match="last_batch='keep'"):
        BatchSampler(SequentialSampler(7), 2, 'discard').load_state_dict(state)


class NumpyShuffle(Sampler):
    """A user sampler with no compact state (draws from NumPy's global stream)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(np.random.permutation(self.n))

    def __len__(self):
        return self.n


def test_batch_sampler_records_order_of_stateless_user_sampler():
    np.random.seed(0)
    bs = BatchSampler(NumpyShuffle(9), 2, 'discard')
    it = iter(bs)
    first = next(it)
    rest = list(it)
    np.random.seed(0)
    bs = BatchSampler(NumpyShuffle(9), 2, 'discard')
    it = iter(bs)
    assert next(it) == first
    state = roundtrip(bs.state_dict())
    assert sorted(state['order']) == list(range(9))
    fresh = BatchSampler(NumpyShuffle(9), 2, 'discard')
    fresh.load_state_dict(state)
    assert list(fresh) == rest


def test_base_sampler_interface():
    s = Sampler()
    with pytest.raises(NotImplementedError):
        iter(s)
    assert s.state_dict() is None
    with pytest.raises(ValueError):
        s.load_state_dict({'x': 1})
