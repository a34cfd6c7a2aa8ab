"""The shared period rule and monitor logic (mode, min_delta, baseline)."""
import math

import pytest

import xpnet
from xpnet.handlers import every
from xpnet.handlers._monitor import Monitor, resolve_mode


def test_every():
    assert [c for c in range(0, 10) if every(3, c)] == [3, 6, 9]
    assert not any(every(None, c) for c in range(10))


@pytest.mark.parametrize('name, mode', [
    ('Accuracy', 'max'), ('TopKAccuracy', 'max'), ('F1', 'max'), ('MCC', 'max'),
    ('PearsonCorrelation', 'max'), ('MAE', 'min'), ('MSE', 'min'), ('RMSE', 'min'),
    ('CrossEntropy', 'min'), ('NegativeLogLikelihood', 'min'), ('Perplexity', 'min'),
    ('Loss', 'min')])
def test_auto_mode_from_metric_class(name, mode):
    cls = getattr(xpnet.metric, name)
    kwargs = {'ignore_label': None} if name == 'Perplexity' else {}
    metric = cls(**kwargs)
    assert resolve_mode(metric, 'auto', 'test') == mode
    metric.name = 'validation ' + metric.name
    assert resolve_mode(metric, 'auto', 'test') == mode


class _Custom(xpnet.metric.EvalMetric):
    def update(self, labels, preds):
        pass


@pytest.mark.parametrize('name, mode', [
    ('validation top1-acc', 'max'), ('my_f1', 'max'), ('training auc', 'max'),
    ('val-error-rate', 'min'), ('training hinge loss', 'min'), ('ppl perplexity', 'min')])
def test_auto_mode_from_name(name, mode):
    assert resolve_mode(_Custom(name), 'auto', 'test') == mode


@pytest.mark.parametrize('name', ['score', 'accuracy loss'])
def test_auto_mode_refuses_to_guess(name):
    with pytest.raises(ValueError, match=f"mode='auto' cannot tell whether '{name}'.*pass "
                                         "mode='max' or mode='min'"):
        resolve_mode(_Custom(name), 'auto', 'EarlyStoppingHandler')
    assert resolve_mode(_Custom(name), 'max', 'x') == 'max'


def test_improvement_rules():
    m = Monitor(xpnet.metric.Accuracy(), min_delta=0.05)
    assert m.best == -math.inf and m.is_improvement(0.0)
    m.best = 0.5
    assert not m.is_improvement(0.55) and m.is_improvement(0.56)
    m = Monitor(xpnet.metric.Loss(), min_delta=-0.1, baseline=1.0)
    assert m.best == 1.0 and not m.is_improvement(0.95) and m.is_improvement(0.85)
    m.best = 0.2
    m.reset()
    assert m.best == 1.0
    assert m.state_dict() == {'best': 1.0}


def test_composite_monitor_is_rejected():
    comp = xpnet.metric.CompositeEvalMetric([xpnet.metric.Accuracy()])
    with pytest.raises(ValueError, match='cannot be a CompositeEvalMetric'):
        Monitor(comp, owner='EarlyStoppingHandler')
