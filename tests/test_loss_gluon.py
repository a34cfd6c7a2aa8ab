"""CTCLoss and SDMLLoss against Gluon 1.9.1 (tests/oracle/gen_loss_gluon.py): values and
gradients, float64 finite-difference checks, and CTC's conventions (blank last, -1 padding,
lengths, impossible alignments)."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, loss as gloss, nd
from conftest import oracle
from gradcheck import check_grad

DATA = oracle('loss_gluon.npz')
CASES = sorted({k.split('/')[0] for k in DATA if k.endswith('/spec')})


def _case(name):
    spec = json.loads(str(DATA[f'{name}/spec']))
    ins = [DATA[f'{name}/in{i}'] if present else None
           for i, present in enumerate(spec['inputs'])]
    return spec, ins


@pytest.mark.parametrize('name', CASES)
def test_parity_with_mxnet(name, ctx):
    spec, ins = _case(name)
    xs = [None if a is None else xpnet.array(a, ctx=ctx) for a in ins]
    for i in spec['grads']:
        xs[i].attach_grad()
    L = getattr(gloss, spec['cls'])(**spec['kwargs'])
    with autograd.record():
        out = L(*xs)
    out.backward()
    assert out.dtype == np.float32 and out.shape == DATA[f'{name}/out'].shape
    np.testing.assert_allclose(out.asnumpy(), DATA[f'{name}/out'], rtol=1e-4, atol=1e-5)
    for i in spec['grads']:
        g = DATA[f'{name}/grad{i}']
        np.testing.assert_allclose(xs[i].grad.asnumpy(), g, rtol=1e-4, atol=1e-5,
                                   err_msg=f'gradient of input {i}')


def test_ctc_gradient_finite_differences(ctx):
    pred = np.random.RandomState(0).randn(2, 5, 4)
    label = np.array([[1, 1, -1], [0, 2, 1]], np.float32)
    L = gloss.CTCLoss()
    check_grad(lambda p: L(p, xpnet.array(label, ctx=p.context)), [pred], ctx=ctx,
               rtol=1e-5, atol=1e-7)
    lengths = np.array([4, 5], np.float32)
    check_grad(lambda p: L(p, xpnet.array(label, ctx=p.context),
                           xpnet.array(lengths, ctx=p.context)), [pred], ctx=ctx)


def test_sdml_gradient_finite_differences(ctx):
    rng = np.random.RandomState(1)
    check_grad(gloss.SDMLLoss(smoothing_parameter=0.2), [rng.randn(4, 3), rng.randn(4, 3)],
               ctx=ctx)


def test_ctc_value_by_enumeration():
    """Two frames, one label 'a' over classes {a, blank}: paths a-a, a-_, _-a."""
    logits = np.log(np.array([[[0.6, 0.4]], [[0.3, 0.7]]], np.float64))     # (T, N, C)
    out = gloss.CTCLoss(layout='TNC')(xpnet.array(logits, dtype='float64'),
                                      xpnet.array([[0]]))
    p = 0.6 * 0.3 + 0.6 * 0.7 + 0.4 * 0.3
    np.testing.assert_allclose(out.asnumpy(), [-np.log(p)], rtol=1e-12)


def test_ctc_impossible_alignment_is_inf_with_zero_gradient():
    pred = xpnet.array(np.random.randn(1, 2, 3))           # 2 frames for 'a a' (needs 3)
    pred.attach_grad()
    with autograd.record():
        out = gloss.CTCLoss()(pred, xpnet.array([[0, 0]]))
    out.backward()
    assert np.isinf(out.asnumpy()).all()
    assert (pred.grad.asnumpy() == 0).all()


def test_ctc_bad_arguments():
    with pytest.raises(ValueError, match='layout'):
        gloss.CTCLoss(layout='NCT')
    with pytest.raises(ValueError, match='label_layout'):
        gloss.CTCLoss(label_layout='TT')
    with pytest.raises(ValueError, match='label sequences'):
        gloss.CTCLoss()(nd.zeros((2, 4, 3)), nd.zeros((3, 2)))
    with pytest.raises(ValueError, match='one length per sample'):
        gloss.CTCLoss()(nd.zeros((2, 4, 3)), nd.zeros((2, 2)), nd.array([4, 4, 4]))


def test_nd_ctc_loss_blank_first():
    """``nd.CTCLoss`` defaults to MXNet's op convention: blank 0, labels from 1, 0-padded."""
    rng = np.random.RandomState(2)
    data = rng.randn(6, 2, 4).astype(np.float32)             # (T, N, C)
    first = nd.CTCLoss(nd.array(data), nd.array([[1, 2, 0], [3, 0, 0]]))
    # the same problem with the blank moved to the end and labels shifted down by one
    last = nd.CTCLoss(nd.array(np.roll(data, -1, axis=2)), nd.array([[0, 1, -1], [2, -1, -1]]),
                      blank_label='last')
    np.testing.assert_allclose(first.asnumpy(), last.asnumpy(), rtol=1e-6)


def _ulps(a, ref):
    return np.abs(a - ref) / np.spacing(np.abs(ref).astype(np.float32))


def test_selu_equals_mxnet_to_one_rounding_step_away_from_zero():
    x = DATA['extra/selu_x']
    out = xpnet.gluon.nn.SELU()(nd.array(x)).asnumpy()
    far = np.abs(x) >= 0.5
    assert (_ulps(out, DATA['extra/selu_out'])[far] <= 1).all()


def test_selu_equals_mxnet_to_one_rounding_step_near_zero():
    x = DATA['extra/selu_x']
    out = xpnet.gluon.nn.SELU()(nd.array(x)).asnumpy()
    assert (_ulps(out, DATA['extra/selu_out']) <= 1).all()


def test_nll_and_cross_entropy_equal_mxnet_to_one_rounding_step():
    pred, label = DATA['extra/nll_pred'], DATA['extra/nll_label']
    for key, metric in (('nll', xpnet.metric.NegativeLogLikelihood()),
                        ('ce', xpnet.metric.CrossEntropy())):
        metric.update([nd.array(label)], [nd.array(pred)])
        value, ref = metric.get()[1], float(DATA[f'extra/{key}'])
        assert abs(value - ref) <= np.spacing(np.float32(ref)), key
