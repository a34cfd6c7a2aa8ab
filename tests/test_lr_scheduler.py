"""LR schedulers: MXNet 1.9.1's answers call by call (stateful behaviour, warmup, jumps and steps
back; tests/oracle/gen_optimizer.py), state_dict round trips, argument errors."""
import json
import logging

import numpy as np
import pytest
from conftest import oracle

from xpnet import lr_scheduler

DATA = oracle('optimizer.npz')
CASES = sorted({k.split('/')[1] for k in DATA if k.startswith('sched/')})


def _build(case):
    cls, kwargs = json.loads(str(DATA[f'sched/{case}/spec']))
    return getattr(lr_scheduler, cls)(**kwargs)


@pytest.mark.parametrize('case', CASES)
def test_matches_mxnet_call_by_call(case):
    sched = _build(case)
    got = [sched(int(n)) for n in DATA[f'sched/{case}/nup']]
    np.testing.assert_allclose(got, DATA[f'sched/{case}/lr'], rtol=1e-13, atol=0)


@pytest.mark.parametrize('case', CASES)
def test_state_dict_resumes_identically(case):
    nup = [int(n) for n in DATA[f'sched/{case}/nup']]
    expected = DATA[f'sched/{case}/lr']
    half = len(nup) // 2
    sched = _build(case)
    for n in nup[:half]:
        sched(n)
    state = json.loads(json.dumps(sched.state_dict()))    # JSON-serializable
    rebuilt = lr_scheduler.from_state_dict(state)
    fresh = _build(case)
    fresh.load_state_dict(state)
    for s in (rebuilt, fresh):
        assert type(s) is type(sched)
        got = [s(n) for n in nup[half:]]
        np.testing.assert_allclose(got, expected[half:], rtol=1e-13, atol=0)


def test_factor_scheduler_is_stateful():
    s = lr_scheduler.FactorScheduler(step=10, factor=0.5, base_lr=1.0)
    assert s(1) == 1.0 and s(10) == 1.0 and s(11) == 0.5
    assert s(35) == 0.125
    assert s(1) == 0.125             # decays are never undone (MXNet)
    assert s.count == 30
    floor = lr_scheduler.FactorScheduler(step=1, factor=0.1, stop_factor_lr=1e-3, base_lr=1.0)
    assert floor(100) == 1e-3


def test_factor_scheduler_logs_changes(caplog):
    s = lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=1.0)
    with caplog.at_level(logging.INFO, logger='xpnet.lr_scheduler'):
        s(3)
    assert 'Change learning rate to 2.50000e-01' in caplog.text


def test_warmup():
    s = lr_scheduler.PolyScheduler(max_update=20, base_lr=1.0, warmup_steps=4,
                                   warmup_begin_lr=0.2)
    np.testing.assert_allclose([s(n) for n in range(4)], [0.2, 0.4, 0.6, 0.8])
    c = lr_scheduler.CosineScheduler(max_update=20, base_lr=1.0, warmup_steps=4,
                                     warmup_begin_lr=0.2, warmup_mode='constant')
    assert [c(n) for n in range(4)] == [0.2] * 4
    assert c(4) == 1.0 and c(20) == 0.0 and c(100) == 0.0


def test_argument_errors():
    with pytest.raises(ValueError, match='step must be >= 1'):
        lr_scheduler.FactorScheduler(step=0)
    with pytest.raises(ValueError, match='factor'):
        lr_scheduler.FactorScheduler(step=2, factor=1.5)
    with pytest.raises(ValueError, match='increasing'):
        lr_scheduler.MultiFactorScheduler(step=[5, 3])
    with pytest.raises(ValueError, match='max_update'):
        lr_scheduler.PolyScheduler(max_update=0)
    with pytest.raises(TypeError, match='max_update'):
        lr_scheduler.CosineScheduler(max_update=10.5)
    with pytest.raises(ValueError, match='warmup_begin_lr'):
        lr_scheduler.CosineScheduler(max_update=10, base_lr=0.1, warmup_begin_lr=0.5)
    with pytest.raises(ValueError, match='warmup_mode'):
        lr_scheduler.FactorScheduler(step=2, warmup_mode='cubic')
    with pytest.raises(ValueError, match='warmup_steps'):
        lr_scheduler.FactorScheduler(step=2, warmup_steps=-1)
    with pytest.raises(NotImplementedError):
        lr_scheduler.LRScheduler()(1)
    with pytest.raises(ValueError, match='FactorScheduler'):
        lr_scheduler.PolyScheduler(max_update=5).load_state_dict(
            lr_scheduler.FactorScheduler(step=2).state_dict())
    with pytest.raises(ValueError, match='unknown'):
        lr_scheduler.from_state_dict({'type': 'NoSuchScheduler'})


def test_custom_scheduler_state_dict():
    class Halving(lr_scheduler.LRScheduler):
        def __call__(self, num_update):
            return self.base_lr * 0.5 ** num_update

    s = Halving(base_lr=0.8)
    r = lr_scheduler.from_state_dict(json.loads(json.dumps(s.state_dict())))
    assert type(r) is Halving and r(2) == 0.2
