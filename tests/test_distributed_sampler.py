"""SplitSampler: equal shards of a dataset for data-parallel ranks (no MPI needed)."""
import json

import numpy as np
import pytest

from xpnet.data import ArrayDataset, BatchSampler, DataLoader, SplitSampler


def _parts(length, n, **kw):
    return [SplitSampler(length, num_parts=n, part_index=k, **kw) for k in range(n)]


@pytest.mark.parametrize('length,n', [(10, 3), (12, 4), (7, 1), (2, 5), (0, 3)])
def test_parts_are_equal_and_cover_every_index(length, n):
    parts = _parts(length, n)
    got = [list(p) for p in parts]
    per = -(-length // n)
    assert all(len(g) == per == len(p) for g, p in zip(got, parts))
    flat = sum(got, [])
    assert set(flat) == set(range(length))
    # the padding wraps around: the first indices of the order repeat, once each
    assert sorted(flat) == sorted(list(range(length)) + list(np.resize(np.arange(length),
                                                                        n * per)[length:]))
    extra = n * per - length
    assert sum(p.padding for p in parts) == extra
    for g, p in zip(got, parts):          # a padded part ends with one of the wrapped indices
        assert not p.padding or g[-1] < extra


def test_unshuffled_parts_stride_through_the_data():
    assert [list(p) for p in _parts(10, 3)] == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    assert [p.padding for p in _parts(10, 3)] == [0, 1, 1]


def test_every_part_agrees_on_each_epochs_shuffle():
    parts = _parts(50, 4, shuffle=True, seed=7)
    epochs = [[list(p) for p in parts] for _ in range(3)]
    for shards in epochs:
        assert set(sum(shards, [])) == set(range(50))
    assert epochs[0] != epochs[1] != epochs[2]
    again = _parts(50, 4, shuffle=True, seed=7)        # another process, same arguments
    assert [list(p) for p in again] == epochs[0]
    other = _parts(50, 4, shuffle=True, seed=8)
    assert [list(p) for p in other] != epochs[0]
    p = parts[1]
    p.set_epoch(1)
    assert list(p) == epochs[1][1] and list(p) == epochs[2][1]


def test_state_resumes_the_epoch_on_any_part():
    a = SplitSampler(30, num_parts=3, part_index=0, shuffle=True, seed=1)
    list(a)
    order = list(a)                                     # epoch 1
    state = json.loads(json.dumps(a.state_dict()))
    assert state['epoch'] == 1 and 'part_index' not in state
    b = SplitSampler(30, num_parts=3, part_index=0, shuffle=True, seed=1)
    b.load_state_dict(state)
    assert b.state_dict() == state
    assert list(b) == order and list(b) == list(a)      # then both go on with epoch 2
    c = SplitSampler(30, num_parts=3, part_index=2, shuffle=True, seed=1)
    c.load_state_dict(state)                            # rank 0's state, another rank
    fresh = SplitSampler(30, num_parts=3, part_index=2, shuffle=True, seed=1)
    fresh.set_epoch(1)
    assert list(c) == list(fresh)
    with pytest.raises(ValueError, match='num_parts=3'):
        SplitSampler(30, num_parts=2, part_index=0, shuffle=True, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match='SplitSampler state'):
        b.load_state_dict({'rng_state': None})


def test_dataloader_resumes_mid_epoch():
    data = ArrayDataset(np.arange(40, dtype=np.float32))
    loader = DataLoader(data, batch_size=3, sampler=SplitSampler(40, 2, 1, shuffle=True))
    next(iter(loader))                                  # epoch 0
    it = iter(loader)                                   # epoch 1
    next(it)
    state = loader.state_dict()
    rest = [b.asnumpy().tolist() for b in it]
    other = DataLoader(data, batch_size=3, sampler=SplitSampler(40, 2, 1, shuffle=True))
    other.load_state_dict(json.loads(json.dumps(state)))
    assert [b.asnumpy().tolist() for b in other] == rest
    assert len(BatchSampler(SplitSampler(40, 2, 1), 3, 'keep')) == 7


def test_defaults_come_from_the_world_and_arguments_are_checked():
    p = SplitSampler(5)                                 # one process: the whole range
    assert list(p) == [0, 1, 2, 3, 4] and p.padding == 0
    for kwargs, match in (({'num_parts': 0}, 'num_parts'), ({'part_index': 3, 'num_parts': 3},
                          'part_index'), ({'seed': -1}, 'seed'), ({'num_parts': 1.5}, 'num_parts')):
        with pytest.raises(ValueError, match=match):
            SplitSampler(5, **kwargs)
    with pytest.raises(ValueError, match='length'):
        SplitSampler(-1)
