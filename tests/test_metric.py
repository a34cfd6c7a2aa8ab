"""xpnet.metric: values against MXNet 1.9.1 (tests/data/metric.npz from
tests/oracle/gen_metric.py), names, local/global statistics, composites, create(),
state_dict round trips and bad inputs."""
import json
import math

import numpy as np
import pytest

import xpnet
from xpnet import metric, nd
from conftest import oracle

DATA = oracle('metric.npz')
CASES = {c['name']: c for c in json.loads(str(DATA['cases']))}


def make(c):
    if c['metric'] == 'composite':
        return metric.CompositeEvalMetric([metric.Accuracy(), metric.CrossEntropy(),
                                           metric.TopKAccuracy(top_k=2)])
    return getattr(metric, c['metric'])(**c['kwargs'])


def batches(c, ctx, as_numpy=False):
    name = c['name']
    for k, ndev in enumerate(c['devices']):
        labels = [DATA[f'{name}__u{k}_label{d}'] for d in range(ndev)]
        preds = [DATA[f'{name}__u{k}_pred{d}'] for d in range(ndev)]
        if not as_numpy:
            labels = [xpnet.array(a, ctx=ctx) for a in labels]
            preds = [xpnet.array(a, ctx=ctx) for a in preds]
        if ndev == 1 and k == 0:        # a bare array, not a list
            labels, preds = labels[0], preds[0]
        yield k, labels, preds


def run_case(c, ctx, as_numpy=False):
    m = make(c)
    local, glob = [], []

    def record():
        local.append(m.get()[1])
        glob.append(m.get_global()[1])
    for k, labels, preds in batches(c, ctx, as_numpy):
        m.update(labels, preds)
        record()
        if k == 1 and c['reset_local']:
            m.reset_local()
            record()
    return m, np.array(local, dtype=np.float64), np.array(glob, dtype=np.float64)


@pytest.mark.parametrize('name', sorted(CASES))
def test_values_match_mxnet(name, ctx):
    c = CASES[name]
    m, local, glob = run_case(c, ctx)
    np.testing.assert_allclose(local, DATA[f'{name}__local'], rtol=1e-4, atol=1e-7)
    if name == 'pearsonr_micro':
        # MXNet's get_global() returns 0 in micro mode; ours pools every batch.
        np.testing.assert_allclose(glob, local, rtol=1e-12)
    else:
        np.testing.assert_allclose(glob, DATA[f'{name}__global'], rtol=1e-4, atol=1e-7)
    names = [str(s) for s in DATA[f'{name}__names']]
    got = m.get()[0]
    assert (got if isinstance(got, list) else [got]) == names


@pytest.mark.parametrize('name', ['accuracy', 'f1_micro', 'perplexity_ignore', 'mse',
                                  'cross_entropy', 'top_k_2', 'pcc'])
def test_numpy_inputs_give_the_same_values(name):
    c = CASES[name]
    _, local, glob = run_case(c, None, as_numpy=True)
    np.testing.assert_allclose(local, DATA[f'{name}__local'], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(glob, DATA[f'{name}__global'], rtol=1e-4, atol=1e-7)


def test_every_public_metric_is_covered_by_the_oracle():
    covered = {c['metric'] for c in CASES.values()}
    wanted = {'Accuracy', 'TopKAccuracy', 'F1', 'MCC', 'MAE', 'MSE', 'RMSE', 'CrossEntropy',
              'NegativeLogLikelihood', 'Perplexity', 'PearsonCorrelation', 'PCC', 'Loss',
              'composite'}
    assert wanted <= covered, wanted - covered


# ---- names and create() ------------------------------------------------------------------

@pytest.mark.parametrize('spec, cls, name', [
    ('acc', metric.Accuracy, 'accuracy'), ('accuracy', metric.Accuracy, 'accuracy'),
    ('ACC', metric.Accuracy, 'accuracy'),
    (('top_k_accuracy', {'top_k': 5}), metric.TopKAccuracy, 'top_k_accuracy_5'),
    (('top_k_acc', {'top_k': 3}), metric.TopKAccuracy, 'top_k_accuracy_3'),
    ('f1', metric.F1, 'f1'), ('mcc', metric.MCC, 'mcc'), ('mae', metric.MAE, 'mae'),
    ('mse', metric.MSE, 'mse'), ('rmse', metric.RMSE, 'rmse'),
    ('ce', metric.CrossEntropy, 'cross-entropy'),
    ('crossentropy', metric.CrossEntropy, 'cross-entropy'),
    ('nll_loss', metric.NegativeLogLikelihood, 'nll-loss'),
    ('negativeloglikelihood', metric.NegativeLogLikelihood, 'nll-loss'),
    (('perplexity', {'ignore_label': None}), metric.Perplexity, 'perplexity'),
    ('pearsonr', metric.PearsonCorrelation, 'pearsonr'),
    ('pearsoncorrelation', metric.PearsonCorrelation, 'pearsonr'),
    ('pcc', metric.PCC, 'pcc'), ('loss', metric.Loss, 'loss'),
    ('composite', metric.CompositeEvalMetric, 'composite'),
])
def test_create_by_registered_name(spec, cls, name):
    m = metric.create(spec[0], **spec[1]) if isinstance(spec, tuple) else metric.create(spec)
    assert type(m) is cls and m.name == name


def test_create_instances_lists_classes_configs_and_functions():
    acc = metric.Accuracy()
    assert metric.create(acc) is acc
    assert isinstance(metric.create(metric.MSE), metric.MSE)
    comp = metric.create([acc, 'ce', 'mae'])
    assert isinstance(comp, metric.CompositeEvalMetric)
    assert comp.get()[0] == ['accuracy', 'cross-entropy', 'mae']
    again = metric.create(metric.TopKAccuracy(top_k=4, name='tk').get_config())
    assert isinstance(again, metric.TopKAccuracy) and again.top_k == 4 and again.name == 'tk_4'
    again = metric.create(metric.Perplexity(ignore_label=0, axis=1).get_config())
    assert (again.ignore_label, again.axis, again.name) == (0, 1, 'perplexity')
    again = metric.create(metric.create(['f1', metric.MCC(average='micro')]).get_config())
    assert [type(m) for m in again.metrics] == [metric.F1, metric.MCC]
    assert again.metrics[1].average == 'micro'
    assert metric.create('["top_k_accuracy", {"top_k": 2}]').name == 'top_k_accuracy_2'

    def mean_gap(label, pred):
        return float(np.abs(label - pred).mean())
    custom = metric.create(mean_gap)
    assert isinstance(custom, metric.CustomMetric) and custom.name == 'mean_gap'
    custom.update([nd.array([1., 2.])], [nd.array([2., 4.])])
    assert custom.get() == ('mean_gap', 1.5)
    lam = metric.np(lambda l, p: (float((l == p).sum()), l.size))
    assert lam.name == 'custom(<lambda>)'
    lam.update(nd.array([1, 2, 3]), nd.array([1, 0, 3]))
    assert lam.get()[1] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match='unknown metric'):
        metric.create('accuracyy')
    with pytest.raises(ValueError, match='already a metric'):
        metric.create(acc, axis=2)


def test_name_is_settable_and_used():
    m = metric.Loss()
    m.name = 'training loss'
    m.update(0, [nd.array([1., 3.])])
    assert m.get() == ('training loss', 2.0)
    assert m.get_name_value() == [('training loss', 2.0)]
    assert m.get_global_name_value() == [('training loss', 2.0)]


# ---- semantics -------------------------------------------------------------------------------

def test_nan_before_any_update():
    for m in (metric.Accuracy(), metric.F1(), metric.MCC(average='micro'), metric.MSE(),
              metric.Perplexity(None), metric.PearsonCorrelation(average='micro'),
              metric.Loss(), metric.PCC(), metric.TopKAccuracy(3)):
        assert math.isnan(m.get()[1]) and math.isnan(m.get_global()[1]), m.name
    names, values = metric.create(['acc', 'mse']).get()
    assert names == ['accuracy', 'mse'] and all(math.isnan(v) for v in values)


def test_reset_clears_global_and_reset_local_does_not():
    m = metric.Accuracy()
    m.update(nd.array([0, 1]), nd.array([[1., 0.], [1., 0.]]))
    m.reset_local()
    m.update(nd.array([1, 1]), nd.array([[0., 1.], [0., 1.]]))
    assert m.get()[1] == 1.0 and m.get_global()[1] == 0.75
    m.reset()
    assert math.isnan(m.get_global()[1])


def test_loss_metric_accepts_what_the_estimator_passes(ctx):
    m = metric.Loss()
    m.update(0, [nd.array([1., 2.], ctx=ctx), nd.array([[3.], [6.]], ctx=ctx)])
    m.update(None, nd.array([8.], ctx=ctx))
    m.update(None, np.array([0.5, 1.5]))
    assert m.get() == ('loss', pytest.approx(22 / 7))
    assert m.num_inst == 7


def test_top_k_one_is_accuracy_and_large_k_is_one():
    pred = nd.array(np.random.rand(10, 4))
    label = nd.array(np.random.randint(0, 4, 10))
    acc, top1, top9 = metric.Accuracy(), metric.TopKAccuracy(1), metric.TopKAccuracy(9)
    for m in (acc, top1, top9):
        m.update(label, pred)
    assert top1.get()[1] == acc.get()[1] and top1.name == 'top_k_accuracy_1'
    assert top9.get()[1] == 1.0
    with pytest.raises(ValueError, match='top_k'):
        metric.TopKAccuracy(0)


def test_pearson_micro_equals_correlation_of_all_data():
    rng = np.random.default_rng(3)
    m = metric.PearsonCorrelation(average='micro')
    xs, ys = [], []
    for n in (5, 9, 2):
        x = rng.standard_normal(n) * 10 + 100
        y = x + rng.standard_normal(n)
        m.update(nd.array(x), nd.array(y))
        xs.append(x.astype(np.float32))
        ys.append(y.astype(np.float32))
    ref = np.corrcoef(np.concatenate(xs), np.concatenate(ys))[0, 1]
    assert m.get()[1] == pytest.approx(ref, rel=1e-9)
    m.reset_local()
    m.update(nd.array(xs[0]), nd.array(ys[0]))
    assert m.get()[1] == pytest.approx(np.corrcoef(xs[0], ys[0])[0, 1], rel=1e-9)
    assert m.get_global()[1] != pytest.approx(m.get()[1])


def test_perplexity_ignore_label_and_axis():
    p = np.array([[[0.3, 0.6], [0.7, 0.4]]], dtype=np.float32)    # (1, classes=2, steps=2)
    lab = np.array([[0, 1]])
    m = metric.Perplexity(ignore_label=None, axis=1)
    m.update(nd.array(lab), nd.array(p))
    assert m.get()[1] == pytest.approx(math.exp(-(math.log(0.3) + math.log(0.4)) / 2),
                                       rel=1e-6)
    m = metric.Perplexity(ignore_label=1, axis=1)
    m.update(nd.array(lab), nd.array(p))
    assert m.get()[1] == pytest.approx(1 / 0.3, rel=1e-6) and m.num_inst == 1


# ---- checkpoints ------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['accuracy', 'f1', 'f1_micro', 'mcc_micro', 'pearsonr_micro',
                                  'pcc', 'perplexity_ignore', 'composite', 'loss'])
def test_state_dict_round_trip_through_json(name):
    c = CASES[name]
    m = make(c)
    it = batches(c, None)
    for _ in range(2):
        _, labels, preds = next(it)
        m.update(labels, preds)
    state = json.loads(json.dumps(m.state_dict()))
    fresh = make(c)
    fresh.load_state_dict(state)
    assert fresh.get() == m.get() or np.allclose(fresh.get()[1], m.get()[1], equal_nan=True)
    _, labels, preds = next(it)
    m.update(labels, preds)
    fresh.update(labels, preds)
    np.testing.assert_allclose(np.array(fresh.get()[1], dtype=float),
                               np.array(m.get()[1], dtype=float), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(np.array(fresh.get_global()[1], dtype=float),
                               np.array(m.get_global()[1], dtype=float), rtol=1e-12,
                               equal_nan=True)


def test_load_state_dict_refuses_another_metric():
    with pytest.raises(ValueError, match='Accuracy'):
        metric.MSE().load_state_dict(metric.Accuracy().state_dict())
    comp = metric.create(['acc', 'mse'])
    with pytest.raises(ValueError, match='2 metrics'):
        metric.create(['acc']).load_state_dict(comp.state_dict())


# ---- bad inputs ---------------------------------------------------------------------------------

def test_mismatched_counts_are_named():
    a = nd.array([0, 1])
    p = nd.array([[1., 0.], [0., 1.]])
    for m in (metric.Accuracy(), metric.MSE(), metric.F1(), metric.CrossEntropy(),
              metric.Perplexity(None), metric.PearsonCorrelation(), metric.TopKAccuracy(2)):
        with pytest.raises(ValueError, match='2 prediction') as e:
            m.update([a], [p, p])
        assert m.name in str(e.value)


@pytest.mark.parametrize('m, label, pred', [
    (metric.Accuracy(), np.zeros(3), np.random.rand(4, 2)),
    (metric.TopKAccuracy(2), np.zeros(3), np.random.rand(4, 3)),
    (metric.F1(), np.zeros(3), np.random.rand(4, 2)),
    (metric.MCC(), np.zeros(4), np.random.rand(4)),
    (metric.MAE(), np.zeros(3), np.random.rand(4)),
    (metric.RMSE(), np.zeros((4, 2)), np.random.rand(4, 3)),
    (metric.CrossEntropy(), np.zeros(3), np.random.rand(4, 2)),
    (metric.NegativeLogLikelihood(), np.zeros(5), np.random.rand(4, 2)),
    (metric.Perplexity(None), np.zeros(3), np.random.rand(4, 2)),
    (metric.PearsonCorrelation(), np.zeros(4), np.random.rand(4, 1)),
])
def test_mismatched_shapes_are_named(m, label, pred):
    with pytest.raises(ValueError) as e:
        m.update(nd.array(label), nd.array(pred))
    assert str(tuple(pred.shape)) in str(e.value) and m.name in str(e.value)


def test_binary_metrics_refuse_multiclass_labels():
    with pytest.raises(ValueError, match='binary'):
        metric.F1().update(nd.array([0, 1, 2]), nd.array(np.random.rand(3, 3)))


CLASS_INDEX_METRICS = [
    (lambda: metric.Accuracy(), 4), (lambda: metric.TopKAccuracy(top_k=2), 4),
    (lambda: metric.F1(), 2), (lambda: metric.MCC(average='micro'), 2),
    (lambda: metric.PCC(), 4), (lambda: metric.CrossEntropy(), 4),
    (lambda: metric.NegativeLogLikelihood(), 4), (lambda: metric.Perplexity(None), 4)]


@pytest.mark.parametrize('make, classes', CLASS_INDEX_METRICS)
@pytest.mark.parametrize('bad', ['negative', 'too_large', 'fraction', 'nan'])
def test_class_index_metrics_refuse_bad_labels(ctx, make, classes, bad):
    """Silently clipped or truncated before; now a ValueError naming the range."""
    value = {'negative': -1, 'too_large': classes, 'fraction': 0.5, 'nan': np.nan}[bad]
    pred = xpnet.array(np.random.RandomState(0).rand(3, classes), ctx=ctx)
    m = make()
    with pytest.raises(ValueError, match=rf'{m.name}: labels must be whole class indices '
                                         rf'in \[0, {classes}\)') as err:
        m.update(xpnet.array([0, value, 1], ctx=ctx), pred)
        m.get()          # a metric accumulating on a device raises at its read-back
    if ctx.device_type == 'cpu':
        assert ', got' in str(err.value)
    m.update(xpnet.array([0, 1, 1], ctx=ctx), pred)       # whole floats are fine
    assert m.num_inst > 0 or m.global_num_inst > 0


def test_perplexity_does_not_check_ignored_labels():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    m = metric.Perplexity(ignore_label=-1)
    m.update(nd.array([1, -1, 0]), nd.array(probs))
    assert m.get()[1] == pytest.approx(np.exp(-np.log([0.8, 0.5]).mean()))
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        m.update(nd.array([1, -2, 0]), nd.array(probs))


def test_a_failed_device_check_surfaces_at_the_metric_read_back():
    """The loss checks device labels without reading back, and a metric update on the
    device reads nothing back either; the metric's value is read back (one transfer with
    the pending flags), and the loss's error is raised there."""
    from xpnet.backend import simulated
    ctx = xpnet.backend.sim(0)
    pred = xpnet.array(np.random.rand(2, 3), ctx=ctx)
    label = xpnet.array([0, 3], ctx=ctx)
    m = metric.Loss()
    with simulated.counting() as c:
        loss = xpnet.loss.SoftmaxCrossEntropyLoss()(pred, label)
        m.update(None, loss)
    assert c.syncs == 0
    with simulated.counting() as c:
        with pytest.raises(ValueError, match=r'SoftmaxCrossEntropyLoss.*\[0, 3\)'):
            m.get()
    assert c.syncs == 1


def test_host_labels_with_device_predictions(ctx):
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], dtype=np.float32)
    label = np.array([1, 0, 1])
    for m, want in ((metric.CrossEntropy(), -np.log(probs[[0, 1, 2], label]).mean()),
                    (metric.Perplexity(None), np.exp(-np.log(probs[[0, 1, 2], label]).mean())),
                    (metric.Accuracy(), 2 / 3), (metric.F1(), 2 / 3)):
        m.update(label, xpnet.array(probs, ctx=ctx))
        assert m.get()[1] == pytest.approx(want, rel=1e-6), m.name
