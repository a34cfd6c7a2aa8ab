"""xpnet.loss: MXNet 1.9.1 parity (tests/data/loss.npz from tests/oracle/gen_loss.py),
float64 finite-difference gradients, shapes/dtypes, the one-op fast path, bad inputs."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, loss as gloss, nd
from conftest import oracle
from gradcheck import check_grad

DATA = oracle('loss.npz')
CASES = {c['name']: c for c in json.loads(str(DATA['cases']))}

# Inputs each loss is differentiable in (positional indices).
DIFF = {'SoftmaxCrossEntropyLoss': None, 'TripletLoss': [0, 1, 2],
        'CosineEmbeddingLoss': [0, 1]}


def build(c):
    return getattr(gloss, c['cls'])(**c['kwargs'])


def case_arrays(c):
    ins = [DATA[f"{c['name']}__in{i}"] for i in range(c['n_in'])]
    kw = {k: DATA[f"{c['name']}__kw_{k}"] for k in c['kw']}
    return ins, kw


def diff_inputs(c):
    if c['cls'] == 'SoftmaxCrossEntropyLoss':
        return [0] if c['kwargs'].get('sparse_label', True) else [0, 1]
    return DIFF.get(c['cls']) or list(range(c['n_in']))


# ---- MXNet parity -----------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(CASES))
def test_parity_with_mxnet(name, ctx):
    c = CASES[name]
    ins, kw = case_arrays(c)
    xs = [xpnet.array(a, ctx=ctx) for a in ins]
    for i in c['grads']:
        xs[i].attach_grad()
    kws = {k: xpnet.array(v, ctx=ctx) for k, v in kw.items()}
    L = build(c)
    with autograd.record():
        out = L(*xs, **kws)
        head = out.mean() if c['reduce'] == 'mean' else out
    if c['grads']:
        head.backward()
    assert out.dtype == np.float32
    batch_axis = c['kwargs'].get('batch_axis', 0)
    if c['reduce'] == 'mean':     # PoissonNLLLoss: Gluon 1.9.1's F.mean over the batch
        assert out.shape == (1,)
    else:
        assert out.shape == (ins[0].shape[batch_axis],), 'one value per sample'
    ref = DATA[f'{name}__out']
    got = out.asnumpy()
    if c['reduce'] == 'mean':
        got = got.mean(keepdims=True)
    np.testing.assert_allclose(got, ref.reshape(got.shape), rtol=1e-4, atol=1e-6)
    for i in c['grads']:
        g = DATA[f'{name}__grad{i}']
        np.testing.assert_allclose(xs[i].grad.asnumpy(), g, rtol=1e-4,
                                   atol=1e-6 * max(1.0, np.abs(g).max()),
                                   err_msg=f'gradient of input {i}')


def test_parity_cases_cover_every_loss():
    covered = {c['cls'] for c in CASES.values()} | {'CTCLoss', 'SDMLLoss'}  # test_loss_gluon
    wanted = set(gloss.__all__) - {'Loss', 'SoftmaxCELoss', 'SigmoidBCELoss'}
    assert wanted <= covered, wanted - covered


# ---- finite-difference gradients (float64) ----------------------------------------------------

def _grad_case_inputs(c):
    ins, kw = case_arrays(c)
    if c['name'] == 'poisson_full':
        # The Stirling term switches on at target > 1: keep the targets off that step.
        ins = [ins[0], np.random.default_rng(0).uniform(1.5, 6, ins[1].shape)]
    return ins, kw


@pytest.mark.parametrize('name', sorted(CASES))
def test_gradient_finite_differences(name, ctx):
    c = CASES[name]
    ins, kw = _grad_case_inputs(c)
    L = build(c)
    keys = sorted(kw)
    n = len(ins)

    def fn(*arrs):
        return L(*arrs[:n], **dict(zip(keys, arrs[n:])))
    hosts = [a.astype(np.float64) for a in ins] + [kw[k].astype(np.float64) for k in keys]
    check_grad(fn, hosts, ctx=ctx, wrt=diff_inputs(c), rtol=1e-5, atol=1e-7)


def test_float64_stays_float64(ctx):
    p = xpnet.array(np.random.randn(3, 4), ctx=ctx, dtype='float64')
    for L in (gloss.L2Loss(), gloss.SoftmaxCELoss(), gloss.SigmoidBCELoss(), gloss.HuberLoss()):
        lab = xpnet.array([0, 1, 3], ctx=ctx) if isinstance(L, gloss.SoftmaxCELoss) else \
            xpnet.array(np.random.rand(3, 4), ctx=ctx)
        assert L(p, lab).dtype == np.float64


# ---- the fused fast path ---------------------------------------------------------------------

def _graph_nodes(out):
    seen, stack = [], [out._node]
    while stack:
        node = stack.pop()
        if node is None or any(node is s for s in seen):
            continue
        seen.append(node)
        stack.extend(x._node for x in node.inputs if x is not None)
    return seen


def test_softmax_ce_default_records_one_op(ctx):
    pred = xpnet.array(np.random.randn(8, 10), ctx=ctx)
    pred.attach_grad()
    label = xpnet.array(np.random.randint(0, 10, 8), ctx=ctx)
    with autograd.record():
        out = gloss.SoftmaxCrossEntropyLoss()(pred, label)
    nodes = _graph_nodes(out)
    assert len(nodes) == 1 and nodes[0].name == 'softmax_cross_entropy'
    assert out.shape == (8,)
    # Float labels and a trailing label axis take the same single-op path.
    for lab in (label.astype('float32'), label.reshape((8, 1))):
        with autograd.record():
            out = gloss.SoftmaxCrossEntropyLoss()(pred, lab)
        assert len(_graph_nodes(out)) == 1
    out.backward()
    p = np.exp(pred.asnumpy() - pred.asnumpy().max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(8), label.asnumpy()] -= 1
    np.testing.assert_allclose(pred.grad.asnumpy(), p, rtol=1e-5, atol=1e-6)


def test_softmax_ce_extra_ops_only_when_needed():
    pred = xpnet.array(np.random.randn(4, 3))
    pred.attach_grad()
    label = xpnet.array([0, 1, 2, 0])
    with autograd.record():
        out = gloss.SoftmaxCrossEntropyLoss(weight=2.0)(pred, label)
    assert len(_graph_nodes(out)) == 2          # fused op + the scalar weight


def test_no_graph_outside_record():
    pred = xpnet.array(np.random.randn(4, 3))
    pred.attach_grad()
    out = gloss.L2Loss()(pred, xpnet.array(np.zeros((4, 3))))
    assert out._node is None


# ---- labels, shapes, dtypes ------------------------------------------------------------------

def test_label_forms_give_the_same_loss(ctx):
    p = np.random.randn(5, 1).astype(np.float32)
    y = np.random.randn(5).astype(np.float32)
    pred = xpnet.array(p, ctx=ctx)
    ref = gloss.L2Loss()(pred, xpnet.array(y.reshape(5, 1), ctx=ctx)).asnumpy()
    for lab in (xpnet.array(y, ctx=ctx), xpnet.array(y, ctx=ctx, dtype='float64'), y,
                y.astype(np.float64)):
        out = gloss.L2Loss()(pred, lab)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.asnumpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(ref, 0.5 * (p[:, 0] - y) ** 2, rtol=1e-6)


def test_int_labels_keep_float32(ctx):
    pred = xpnet.array(np.random.randn(4, 3), ctx=ctx)
    ilab = xpnet.array(np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1]]), ctx=ctx)
    assert ilab.dtype.kind == 'i'
    for L in (gloss.L1Loss(), gloss.SigmoidBCELoss(), gloss.HingeLoss(),
              gloss.LogisticLoss(label_format='binary'), gloss.PoissonNLLLoss()):
        out = L(pred, ilab)
        assert out.dtype == np.float32
        assert out.shape == ((1,) if isinstance(L, gloss.PoissonNLLLoss) else (4,))
    out = gloss.SoftmaxCELoss()(pred, xpnet.array(np.array([2, 0, 1, 1]), ctx=ctx))
    assert out.dtype == np.float32


@pytest.mark.parametrize('make, args', [
    (gloss.L2Loss, ((4, 3), (4, 2))),
    (gloss.L1Loss, ((4, 3), (3, 3))),
    (gloss.HuberLoss, ((4, 3), (12, 2))),
    (gloss.HingeLoss, ((4, 3), (4,))),
    (gloss.SquaredHingeLoss, ((4, 3), (4, 1))),
    (gloss.LogisticLoss, ((4, 3), (5, 3))),
    (gloss.SigmoidBCELoss, ((4, 3), (4, 3, 2))),
    (gloss.KLDivLoss, ((4, 3), (4, 2))),
    (gloss.PoissonNLLLoss, ((4, 3), (2, 3))),
    (gloss.SoftmaxCELoss, ((4, 3), (5,))),
    (lambda: gloss.SoftmaxCELoss(sparse_label=False), ((4, 3), (4,))),
    (lambda: gloss.SoftmaxCELoss(axis=1), ((2, 3, 4), (2, 3))),
])
def test_bad_label_shape_names_both_shapes(make, args):
    pshape, lshape = args
    pred = xpnet.array(np.random.randn(*pshape))
    with pytest.raises(ValueError) as e:
        make()(pred, xpnet.array(np.zeros(lshape)))
    msg = str(e.value)
    assert str(tuple(pshape)) in msg and str(tuple(lshape)) in msg


def test_bad_shapes_for_triplet_and_cosine():
    a = xpnet.array(np.random.randn(4, 3))
    with pytest.raises(ValueError, match=r'\(4, 2\)'):
        gloss.TripletLoss()(a, a, xpnet.array(np.zeros((4, 2))))
    with pytest.raises(ValueError, match=r'\(3,\)'):
        gloss.CosineEmbeddingLoss()(a, a, xpnet.array([1, -1, 1]))
    with pytest.raises(ValueError, match=r'\(4, 2\)'):
        gloss.CosineEmbeddingLoss()(a, xpnet.array(np.zeros((4, 2))), xpnet.array([1] * 4))


def test_sample_weight_that_would_enlarge_the_loss_is_refused():
    pred = xpnet.array(np.random.randn(4))
    with pytest.raises(ValueError, match='sample_weight'):
        gloss.L2Loss()(pred, pred, sample_weight=xpnet.array(np.ones((4, 1))))
    pred2 = xpnet.array(np.random.randn(4, 3))
    with pytest.raises(ValueError, match='sample_weight'):
        gloss.SoftmaxCELoss()(pred2, xpnet.array([0, 1, 2, 0]),
                              sample_weight=xpnet.array(np.ones((3,))))


def test_softmax_ce_sample_weight_of_label_shape():
    pred = xpnet.array(np.random.randn(4, 3))
    label = xpnet.array([0, 1, 2, 0])
    sw = np.array([0.5, 1.0, 2.0, 0.0], dtype=np.float32)
    base = gloss.SoftmaxCELoss()(pred, label).asnumpy()
    per_label = gloss.SoftmaxCELoss()(pred, label, sample_weight=xpnet.array(sw)).asnumpy()
    per_sample = gloss.SoftmaxCELoss()(pred, label,
                                       sample_weight=xpnet.array(sw[:, None])).asnumpy()
    np.testing.assert_allclose(per_label, base * sw, rtol=1e-6)
    np.testing.assert_allclose(per_sample, base * sw, rtol=1e-6)


def test_sample_weight_as_host_array_and_scalar():
    pred = xpnet.array(np.random.randn(4, 3))
    label = xpnet.array(np.random.randn(4, 3))
    base = gloss.L1Loss()(pred, label).asnumpy()
    out = gloss.L1Loss()(pred, label, sample_weight=np.full((4, 1), 3.0)).asnumpy()
    np.testing.assert_allclose(out, 3 * base, rtol=1e-6)
    out = gloss.L1Loss()(pred, label, sample_weight=0.5).asnumpy()
    np.testing.assert_allclose(out, 0.5 * base, rtol=1e-6)


def test_poisson_full_finite_for_zero_and_one_targets():
    pred = xpnet.array(np.random.randn(2, 3))
    target = xpnet.array([[0, 1, 2], [0, 0, 5]])
    L = gloss.PoissonNLLLoss(compute_full=True)
    out = L(pred, target).asnumpy()
    assert np.all(np.isfinite(out))
    p, t = pred.asnumpy().astype(np.float64), target.asnumpy().astype(np.float64)
    ts = np.where(t > 1, t, 2)
    stir = np.where(t > 1, ts * np.log(ts) - ts + 0.5 * np.log(2 * np.pi * ts), 0)
    np.testing.assert_allclose(out, [(np.exp(p) - t * p + stir).mean()], rtol=1e-5)


def test_cosine_embedding_values():
    a = np.array([[1., 0.], [1., 1.], [0., 2.]], dtype=np.float32)
    b = np.array([[1., 0.], [-1., -1.], [2., 0.]], dtype=np.float32)
    out = gloss.CosineEmbeddingLoss(margin=0.1)(xpnet.array(a), xpnet.array(b),
                                                xpnet.array([1, 1, -1])).asnumpy()
    np.testing.assert_allclose(out, [0., 2., 0.], atol=1e-6)
    out = gloss.CosineEmbeddingLoss()(xpnet.array(a), xpnet.array(a),
                                      xpnet.array([-1, -1, -1])).asnumpy()
    np.testing.assert_allclose(out, [1., 1., 1.], atol=1e-6)


def test_batch_axis_out_of_range_and_bad_arguments():
    pred = xpnet.array(np.random.randn(4, 3))
    with pytest.raises(ValueError, match='batch_axis'):
        gloss.L2Loss(batch_axis=2)(pred, pred)
    with pytest.raises(ValueError, match='class axis'):
        gloss.SoftmaxCELoss(axis=0)(pred, xpnet.array([0, 1, 2]))
    with pytest.raises(TypeError, match='weight'):
        gloss.L1Loss(weight='heavy')
    with pytest.raises(ValueError, match='label_format'):
        gloss.LogisticLoss(label_format='onehot')
    with pytest.raises(TypeError, match='NDArray or a NumPy array, got str'):
        gloss.L2Loss()('zeros', pred)


def test_label_on_another_device_is_named():
    from xpnet.backend import sim
    pred = xpnet.array(np.random.randn(4, 3))
    with pytest.raises(ValueError, match='label'):
        gloss.L2Loss()(pred, xpnet.array(np.zeros((4, 3)), ctx=sim(0)))


def test_aliases_and_repr():
    assert gloss.SoftmaxCELoss is gloss.SoftmaxCrossEntropyLoss
    assert gloss.SigmoidBCELoss is gloss.SigmoidBinaryCrossEntropyLoss
    assert repr(gloss.L2Loss()) == 'L2Loss(batch_axis=0, w=1.0)'
    assert isinstance(gloss.HingeLoss(), xpnet.layers.HybridBlock)


def test_gluon_style_custom_loss_with_hybrid_forward():
    class MyL2(gloss.Loss):
        def __init__(self, weight=1., batch_axis=0, **kwargs):
            super().__init__(weight, batch_axis, **kwargs)

        def hybrid_forward(self, F, pred, label, sample_weight=None):
            label = gloss._reshape_like(F, label, pred)
            loss = F.square(label - pred)
            loss = gloss._apply_weighting(F, loss, self._weight / 2, sample_weight)
            return F.mean(loss, axis=self._batch_axis, exclude=True)

    p = xpnet.array(np.random.randn(4, 3))
    y = xpnet.array(np.random.randn(4, 3))
    np.testing.assert_allclose(MyL2()(p, y).asnumpy(), gloss.L2Loss()(p, y).asnumpy(),
                               rtol=1e-6)


def test_training_step_reduces_loss():
    from xpnet import layers as nn
    xpnet.random.seed(1)
    net = nn.Dense(3)
    net.initialize()
    x = nd.array(np.random.randn(32, 5))
    y = nd.array(np.argmax(x.asnumpy()[:, :3], axis=1))
    L = gloss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(20):
        with autograd.record():
            l = L(net(x), y)
        l.backward()
        for p in net.collect_params().values():
            p.data()[:] = p.data() - 0.5 * p.grad() / 32
        losses.append(float(l.mean().asscalar()))
    assert losses[-1] < 0.7 * losses[0]


def test_fused_softmax_ce_backward_twice_with_retained_graph(ctx):
    pred = xpnet.array(np.random.randn(4, 5), ctx=ctx)
    pred.attach_grad(grad_req='add')
    label = xpnet.array([0, 4, 2, 2], ctx=ctx)
    with autograd.record():
        out = gloss.SoftmaxCELoss()(pred, label)
    out.backward(retain_graph=True)
    first = pred.grad.asnumpy().copy()
    out.backward()
    np.testing.assert_allclose(pred.grad.asnumpy(), 2 * first, rtol=1e-6)


@pytest.mark.filterwarnings('ignore:invalid value encountered in cast')  # NaN label, on device
@pytest.mark.parametrize('label', [[-1, 0, 0], [0, 4, 0], [0, 0.6, 0], [0, float('nan'), 0]])
def test_bad_sparse_labels_raise_instead_of_being_clipped(ctx, label):
    """MXNet clips such labels silently. On a device the check must not read back: the
    error surfaces at the next read-back (here ``asnumpy``), not in the loss call."""
    from xpnet.backend.checks import flush_device_checks, pending_device_checks
    pred = xpnet.array(np.random.randn(3, 4), ctx=ctx)
    loss_fn = gloss.SoftmaxCELoss()
    if ctx.device_type == 'cpu':
        with pytest.raises(ValueError, match=r'SoftmaxCrossEntropyLoss.*\[0, 4\)'):
            loss_fn(pred, xpnet.array(label, ctx=ctx))
        return
    out = loss_fn(pred, xpnet.array(label, ctx=ctx))     # no error yet: no read-back
    loss_fn(pred, xpnet.array(label, ctx=ctx))
    assert pending_device_checks() == 1                   # one flag per kind of check
    with pytest.raises(ValueError, match=r'SoftmaxCrossEntropyLoss.*\[0, 4\)'):
        out.asnumpy()
    assert pending_device_checks() == 0
    flush_device_checks()                                 # raised once, then forgotten
    good = loss_fn(pred, xpnet.array([0, 3, 1.0], ctx=ctx))
    assert pending_device_checks() == 1 and good.asnumpy().shape == (3,)


def test_fused_sigmoid_bce_op_reshapes_a_same_size_label(ctx):
    from xpnet.ops import sigmoid_binary_cross_entropy as bce
    check_grad(lambda p, z: bce(p, z), [np.random.randn(4, 1), np.random.rand(4)], ctx=ctx)
    check_grad(lambda p, z: bce(p, z), [np.random.randn(4, 3), np.random.rand(3)], ctx=ctx)


def test_ctc_loss_takes_labels_and_lengths_as_device_arrays():
    """Raw device arrays (CuPy's, here the simulated device's) for labels and lengths were
    passed through ``np.asarray``, which CuPy refuses."""
    from xpnet import ops
    from xpnet.backend import sim
    pred = xpnet.array(np.random.default_rng(0).standard_normal((5, 2, 4)), ctx=sim(0))
    labels, lengths = [[1, 2], [3, -1]], [5, 4]
    want = ops.ctc_loss(pred, labels, pred_lengths=lengths).asnumpy()
    with sim(0).use():
        xp = sim(0).xp
        got = ops.ctc_loss(pred, xp.asarray(np.array(labels, np.float32)),
                           pred_lengths=xp.asarray(np.array(lengths)),
                           label_lengths=xp.asarray(np.array([2, 1]))).asnumpy()
    np.testing.assert_array_equal(got, want)
