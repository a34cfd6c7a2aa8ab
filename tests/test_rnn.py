"""Recurrent cells, modifiers and layers: finite-difference gradient checks through a few
unrolled steps, fused-vs-composed equivalence, valid_length semantics, variational dropout
masks, state bookkeeping and argument errors. (Parity with MXNet: test_rnn_parity.py.)"""
import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd, ops
from xpnet.layers import Block, rnn
from gradcheck import check_grad, check_layer_grad

R = np.random.default_rng(3)


def rnd(*shape, scale=1.0):
    return R.uniform(-scale, scale, size=shape)


def randomize(block, scale=0.5, seed=0):
    rng = np.random.default_rng(seed)
    for p in block.collect_params().values():
        p.set_data(rng.uniform(-scale, scale, size=p.shape))


class Unrolled(Block):
    """Wraps a cell: ``forward(x, *begin_states)`` -> [outputs, *states] via unroll."""

    def __init__(self, cell, length, layout='NTC', valid_length=None, merge=True):
        super().__init__()
        self.cell = cell
        self._length, self._layout, self._vl, self._merge = length, layout, valid_length, merge

    def forward(self, x, *states):
        vl = None if self._vl is None else xpnet.array(self._vl, ctx=x.context)
        out, st = self.cell.unroll(self._length, x, begin_state=list(states) or None,
                                   layout=self._layout, merge_outputs=self._merge,
                                   valid_length=vl)
        if isinstance(out, list):
            out = ops.stack(*out, axis=self._layout.find('T'))
        return [out] + list(st)


class Stepped(Block):
    """Calls a cell step by step (the per-step code path)."""

    def __init__(self, cell, length):
        super().__init__()
        self.cell = cell
        self._length = length

    def forward(self, x, *states):
        states = list(states)
        outs = []
        for t in range(self._length):
            o, states = self.cell(x[:, t], states)
            outs.append(o)
        return [ops.stack(*outs, axis=1)] + list(states)


def init(block, ctx, x=None):
    block.initialize(ctx=ctx)
    return block


def cell_inputs(cell, N=2, T=3, C=3):
    states = [rnd(*info['shape']) for info in cell.state_info(N)]
    return [rnd(N, T, C)] + states


# ---- the fused op -------------------------------------------------------------------------

MODES = [('lstm', 4, False), ('lstm', 4, True), ('gru', 3, False), ('rnn_tanh', 1, False),
         ('rnn_relu', 1, False)]


@pytest.mark.parametrize('mode,ng,proj', MODES)
@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('valid', [False, True])
def test_rnn_sequence_gradients(ctx, mode, ng, proj, reverse, valid):
    T, N, C, H, P = 3, 3, 2, 3, 2
    S = P if proj else H
    ins = [rnd(T, N, C), rnd(N, S), rnd(N, H), rnd(ng * H, C, scale=0.7),
           rnd(ng * H, S, scale=0.7), rnd(ng * H), rnd(ng * H)]
    if proj:
        ins.append(rnd(P, H, scale=0.7))
    if mode == 'rnn_relu':      # keep pre-activations away from the kink
        ins[5] = ins[5] + 2.0
    vl = np.array([3, 1, 2]) if valid else None

    def fn(x, h, c, wi, wh, bi, bh, *wr):
        v = None if vl is None else xpnet.array(vl, ctx=x.context)
        return ops.rnn_sequence(x, h, c if mode == 'lstm' else None, wi, wh, bi, bh,
                                wr[0] if wr else None, mode=mode, valid_length=v,
                                reverse=reverse)
    wrt = [i for i in range(len(ins)) if not (i == 2 and mode != 'lstm')]
    check_grad(fn, ins, ctx=ctx, wrt=wrt)


def test_rnn_sequence_valid_length_semantics():
    T, N, C, H = 4, 3, 2, 3
    x = xpnet.array(rnd(T, N, C))
    h0, c0 = xpnet.array(rnd(N, H)), xpnet.array(rnd(N, H))
    w = [xpnet.array(rnd(4 * H, C)), xpnet.array(rnd(4 * H, H)), xpnet.array(rnd(4 * H)),
         xpnet.array(rnd(4 * H))]
    vl = [4, 1, 2]
    y, h, c = ops.rnn_sequence(x, h0, c0, *w, mode='lstm', valid_length=xpnet.array(vl))
    for n, L in enumerate(vl):
        # each sequence alone, truncated to its length
        yn, hn, cn = ops.rnn_sequence(x[:L, n:n + 1], h0[n:n + 1], c0[n:n + 1], *w, mode='lstm')
        np.testing.assert_allclose(y.asnumpy()[:L, n], yn.asnumpy()[:, 0], rtol=1e-6)
        assert not y.asnumpy()[L:, n].any()
        np.testing.assert_allclose(h.asnumpy()[n], hn.asnumpy()[0], rtol=1e-6)
        np.testing.assert_allclose(c.asnumpy()[n], cn.asnumpy()[0], rtol=1e-6)
        # reversed direction: the reversed first L steps
        yr, hr, cr = ops.rnn_sequence(x, h0, c0, *w, mode='lstm',
                                      valid_length=xpnet.array(vl), reverse=True)
        ys, hs, cs = ops.rnn_sequence(x[:L, n:n + 1][::-1], h0[n:n + 1], c0[n:n + 1], *w,
                                      mode='lstm')
        np.testing.assert_allclose(yr.asnumpy()[:L, n], ys.asnumpy()[::-1, 0], rtol=1e-6)
        assert not yr.asnumpy()[L:, n].any()
        np.testing.assert_allclose(hr.asnumpy()[n], hs.asnumpy()[0], rtol=1e-6)


def test_rnn_sequence_state_clip_gradient(ctx):
    T, N, C, H = 3, 2, 2, 3
    ins = [rnd(T, N, C, scale=2), rnd(N, H), rnd(N, H, scale=2), rnd(4 * H, C),
           rnd(4 * H, H), rnd(4 * H), rnd(4 * H)]

    def fn(x, h, c, wi, wh, bi, bh):
        return ops.rnn_sequence(x, h, c, wi, wh, bi, bh, mode='lstm',
                                state_clip=(-0.25, 0.3, False))
    outs = fn(*[xpnet.array(a, dtype='float64') for a in ins])
    c = outs[2].asnumpy()
    assert c.min() >= -0.25 and c.max() <= 0.3
    assert np.isclose(c, -0.25).any() or np.isclose(c, 0.3).any()   # clipping is active
    check_grad(fn, ins, ctx=ctx)


def test_rnn_sequence_errors():
    x = xpnet.array(rnd(3, 2, 4))
    h = xpnet.array(rnd(2, 5))
    wi, wh = xpnet.array(rnd(20, 3)), xpnet.array(rnd(20, 5))
    with pytest.raises(ValueError, match='4 features'):
        ops.rnn_sequence(x, h, h, wi, wh, mode='lstm')
    with pytest.raises(ValueError, match='unknown RNN mode'):
        ops.rnn_sequence(x, h, h, wi, wh, mode='lstmx')
    with pytest.raises(ValueError, match='begin state'):
        ops.rnn_sequence(x, xpnet.array(rnd(3, 5)), h, xpnet.array(rnd(20, 4)), wh,
                         mode='lstm')


@pytest.mark.parametrize('axis', [1, -1])
def test_pointwise_ops_gradients(ctx, axis):
    shape4 = (2, 8, 3) if axis == 1 else (2, 3, 8)
    shape1 = (2, 2, 3) if axis == 1 else (2, 3, 2)
    check_grad(lambda a, b, c: ops.lstm_pointwise(a, b, c, axis=axis),
               [rnd(*shape4), rnd(*shape4), rnd(*shape1)], ctx=ctx)
    shape3 = (2, 6, 3) if axis == 1 else (2, 3, 6)
    check_grad(lambda a, b, h: ops.gru_pointwise(a, b, h, axis=axis),
               [rnd(*shape3), rnd(*shape3), rnd(*shape1)], ctx=ctx)


def test_sequence_utilities(ctx):
    x = rnd(4, 3, 2)
    vl = np.array([2, 4, 1])
    check_grad(lambda a: ops.sequence_mask(a, xpnet.array(vl, ctx=a.context)), [x], ctx=ctx)
    check_grad(lambda a: ops.sequence_last(a, xpnet.array(vl, ctx=a.context)), [x], ctx=ctx)
    check_grad(lambda a: ops.sequence_reverse(a, xpnet.array(vl, ctx=a.context)), [x],
               ctx=ctx)
    r = ops.sequence_reverse(xpnet.array(x, ctx=ctx), xpnet.array(vl, ctx=ctx)).asnumpy()
    np.testing.assert_allclose(r[:2, 0], x[1::-1, 0])
    np.testing.assert_allclose(r[2:, 0], x[2:, 0])          # padding stays in place
    last = ops.sequence_last(xpnet.array(x, ctx=ctx), xpnet.array(vl, ctx=ctx)).asnumpy()
    np.testing.assert_allclose(last, x[vl - 1, np.arange(3)])


# ---- gradient checks through unrolled cells -------------------------------------------------

def _cells():
    return {
        'rnn_tanh': lambda: rnn.RNNCell(3, input_size=3),
        'rnn_relu': lambda: rnn.RNNCell(3, activation='relu', input_size=3),
        'rnn_leaky_block': lambda: rnn.RNNCell(3, activation=xpnet.layers.LeakyReLU(0.2),
                                               input_size=3),
        'lstm': lambda: rnn.LSTMCell(3, input_size=3),
        'lstm_custom': lambda: rnn.LSTMCell(3, input_size=3, activation='softsign',
                                            recurrent_activation='tanh'),
        'gru': lambda: rnn.GRUCell(3, input_size=3),
        'lstmp': lambda: rnn.LSTMPCell(4, 2, input_size=3),
    }


@pytest.mark.parametrize('name', sorted(_cells()))
@pytest.mark.parametrize('path', ['unroll', 'unroll_tnc_list', 'steps', 'valid'])
def test_cell_gradients(ctx, name, path):
    cell = init(_cells()[name](), ctx)
    if name == 'rnn_relu':
        cell.i2h_bias.initialize(init=xpnet.init.Constant(2.0), ctx=ctx, force_reinit=True)
    ins = cell_inputs(cell)
    if path == 'unroll':
        block = Unrolled(cell, 3)
    elif path == 'unroll_tnc_list':
        ins[0] = ins[0].transpose(1, 0, 2)
        block = Unrolled(cell, 3, layout='TNC', merge=False)
    elif path == 'steps':
        block = Stepped(cell, 3)
    else:
        block = Unrolled(cell, 3, valid_length=[3, 1])
    if name != 'rnn_relu':
        randomize(block)
    check_layer_grad(block, ins, ctx=ctx)


MODIFIED = {
    'sequential': lambda: rnn.SequentialRNNCell().add(rnn.LSTMCell(3, input_size=3))
    .add(rnn.GRUCell(2, input_size=3)),
    'residual': lambda: rnn.ResidualCell(rnn.GRUCell(3, input_size=3)),
    'bidirectional': lambda: rnn.BidirectionalCell(rnn.LSTMCell(2, input_size=3),
                                                   rnn.RNNCell(2, input_size=3)),
    'vardrop_zero': lambda: rnn.VariationalDropoutCell(rnn.LSTMPCell(3, 2, input_size=3)),
    'zoneout': lambda: rnn.ZoneoutCell(rnn.GRUCell(3, input_size=3), 0.3, 0.3),
    'dropout_in_stack': lambda: rnn.SequentialRNNCell().add(rnn.DropoutCell(0.4))
    .add(rnn.LSTMCell(2, input_size=3)),
}


@pytest.mark.parametrize('name', sorted(MODIFIED))
@pytest.mark.parametrize('valid', [False, True])
def test_modifier_gradients(name, valid):
    cell = init(MODIFIED[name](), xpnet.cpu())
    randomize(cell)
    # Random modifiers (zoneout, dropout) are deterministic outside training mode.
    check_layer_grad(Unrolled(cell, 3, valid_length=[2, 3] if valid else None),
                     cell_inputs(cell), train_mode=name not in ('zoneout',
                                                                'dropout_in_stack'))


def test_variational_dropout_gradient_with_fixed_masks(ctx):
    """Masks persist across steps until reset(), so finite differences see the same masks
    as the recorded pass: the gradient through all three masks is checked."""
    cell = rnn.VariationalDropoutCell(rnn.LSTMCell(3, input_size=3), drop_inputs=0.3,
                                      drop_states=0.3, drop_outputs=0.3)
    cell.initialize(ctx=ctx)
    randomize(cell)
    block = Stepped(cell, 3)
    check_layer_grad(block, cell_inputs(cell), ctx=ctx)
    masks = np.concatenate([m.asnumpy().ravel() for m in (
        cell.drop_inputs_mask, cell.drop_states_mask, cell.drop_outputs_mask)])
    assert set(np.round(masks, 6)) == {0.0, round(1 / 0.7, 6)}


def test_fused_unroll_equals_composed_cells():
    """The fused sequence op and the op-by-op formulas agree in float64."""
    x = rnd(3, 4, 3)
    for fused, composed in [
            (rnn.LSTMCell(3, input_size=3),
             rnn.LSTMCell(3, input_size=3, activation='tanh', recurrent_activation='sigmoid')),
            (rnn.RNNCell(3, input_size=3), rnn.RNNCell(3, input_size=3))]:
        for c in (fused, composed):
            c.initialize()
            c.cast('float64')
            randomize(c)
        composed._fused_mode = lambda: None
        a, sa = fused.unroll(4, xpnet.array(x, dtype='float64'), merge_outputs=True)
        b, sb = composed.unroll(4, xpnet.array(x, dtype='float64'), merge_outputs=True)
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-12, atol=1e-14)
        for u, v in zip(sa, sb):
            np.testing.assert_allclose(u.asnumpy(), v.asnumpy(), rtol=1e-12, atol=1e-14)


# ---- unroll behaviour ---------------------------------------------------------------------------

def test_unroll_formats_and_valid_length():
    cell = init(rnn.GRUCell(4), xpnet.cpu())
    x = nd.random.uniform(shape=(3, 5, 2))
    out, st = cell.unroll(5, x, layout='NTC')
    assert isinstance(out, list) and len(out) == 5 and out[0].shape == (3, 4)   # Gluon: list
    out, st = cell.unroll(5, x, layout='NTC', merge_outputs=True)
    assert out.shape == (3, 5, 4) and st[0].shape == (3, 4)
    np.testing.assert_allclose(st[0].asnumpy(), out.asnumpy()[:, -1])
    xt = x.transpose((1, 0, 2))
    out2, _ = cell.unroll(5, xt, layout='TNC', merge_outputs=True)
    np.testing.assert_allclose(out2.asnumpy(), out.asnumpy().transpose(1, 0, 2), rtol=1e-6)
    out3, _ = cell.unroll(5, [x[:, t] for t in range(5)], layout='NTC', merge_outputs=True)
    np.testing.assert_allclose(out3.asnumpy(), out.asnumpy(), rtol=1e-6)
    vl = nd.array([5, 2, 3])
    out4, st4 = cell.unroll(5, x, layout='NTC', valid_length=vl)
    assert isinstance(out4, xpnet.NDArray)         # merged when valid_length is given
    o = out4.asnumpy()
    for n, L in enumerate([5, 2, 3]):
        assert not o[n, L:].any()
        np.testing.assert_allclose(o[n, :L], out.asnumpy()[n, :L], rtol=1e-6)
        np.testing.assert_allclose(st4[0].asnumpy()[n], out.asnumpy()[n, L - 1], rtol=1e-6)


def test_unroll_length_mismatch_and_layout_errors():
    cell = init(rnn.LSTMCell(4), xpnet.cpu())
    x = nd.random.uniform(shape=(3, 5, 2))
    with pytest.raises(ValueError, match='length 4'):
        cell.unroll(4, x, layout='NTC')
    with pytest.raises(ValueError, match='layout'):
        cell.unroll(5, x, layout='NC')
    with pytest.raises(ValueError, match='3 input steps'):
        cell.unroll(5, [x[:, 0]] * 3)


def test_begin_state_state_info_and_counters():
    cell = rnn.LSTMPCell(6, 3)
    assert cell.state_info(4) == [{'shape': (4, 3), '__layout__': 'NC'},
                                  {'shape': (4, 6), '__layout__': 'NC'}]
    st = cell.begin_state(batch_size=4)
    assert [s.shape for s in st] == [(4, 3), (4, 6)] and not st[0].asnumpy().any()
    st = cell.begin_state(4, func=nd.ones, dtype='float64')
    assert st[1].dtype == np.float64 and st[1].asnumpy().all()
    st = cell.begin_state(2, func=nd.random.uniform, low=1, high=2)
    assert st[0].asnumpy().min() >= 1
    cell.initialize()
    x = nd.ones((2, 5))
    cell(x, cell.begin_state(2))
    cell(x, cell.begin_state(2))
    assert cell._counter == 1
    cell.reset()
    assert cell._counter == -1 and cell._init_counter == -1
    assert list(cell.collect_params()) == ['i2h_weight', 'h2h_weight', 'h2r_weight',
                                           'i2h_bias', 'h2h_bias']
    assert cell.i2h_weight.shape == (24, 5) and cell.h2h_weight.shape == (24, 3)
    assert cell.h2r_weight.shape == (3, 6)


def test_modifier_rules_and_names():
    base = rnn.LSTMCell(4)
    z = rnn.ZoneoutCell(base, 0.2, 0.1)
    with pytest.raises(RuntimeError, match='modifier'):
        base.begin_state(2)
    with pytest.raises(ValueError, match='already modified'):
        rnn.ResidualCell(base)
    assert len(z.begin_state(2)) == 2
    z.initialize()
    assert list(z.collect_params()) == ['base_cell.i2h_weight', 'base_cell.h2h_weight',
                                        'base_cell.i2h_bias', 'base_cell.h2h_bias']
    bi = rnn.BidirectionalCell(rnn.GRUCell(2), rnn.GRUCell(2))
    with pytest.raises(NotImplementedError, match='unroll'):
        bi(nd.ones((1, 2)), bi.begin_state(1))
    with pytest.raises(ValueError, match='BidirectionalCell'):
        rnn.ZoneoutCell(bi)
    seq = rnn.SequentialRNNCell()
    seq.add(rnn.LSTMCell(3)).add(rnn.GRUCell(2))
    assert [s['shape'] for s in seq.state_info(5)] == [(5, 3), (5, 3), (5, 2)]
    assert list(seq.collect_params())[:2] == ['0.i2h_weight', '0.h2h_weight']
    with pytest.raises(ValueError, match='rate'):
        rnn.DropoutCell(1.5)
    with pytest.raises(ValueError, match='zoneout_outputs'):
        rnn.ZoneoutCell(rnn.GRUCell(2), zoneout_outputs=2)


def test_sequential_step_matches_unroll_and_dropout_cell():
    seq = rnn.SequentialRNNCell()
    seq.add(rnn.LSTMCell(3))
    seq.add(rnn.DropoutCell(0.5))
    seq.add(rnn.RNNCell(2))
    seq.initialize()
    x = nd.random.uniform(shape=(2, 4, 3))
    out, st = seq.unroll(4, x, merge_outputs=True)
    states = seq.begin_state(2)
    for t in range(4):
        o, states = seq(x[:, t], states)
    np.testing.assert_allclose(o.asnumpy(), out.asnumpy()[:, -1], rtol=1e-6)
    with autograd.record():
        d, _ = rnn.DropoutCell(0.5).unroll(4, nd.ones((50, 4, 20)), merge_outputs=True)
    v = d.asnumpy()
    assert set(np.unique(v)) == {0.0, 2.0} and 0.3 < (v == 0).mean() < 0.7


def test_zoneout_training_keeps_previous_values():
    cell = rnn.ZoneoutCell(rnn.RNNCell(50), zoneout_outputs=0.5, zoneout_states=0.0)
    cell.initialize()
    x = nd.random.uniform(shape=(4, 3, 10))
    with autograd.record():
        out, _ = cell.unroll(3, x, merge_outputs=True)
    o = out.asnumpy()
    assert (o[:, 0] == 0).mean() > 0.3          # first step: previous output is zero
    assert (o[:, 1] == o[:, 0]).mean() > 0.3    # later steps keep earlier values
    out_p, _ = cell.unroll(3, x, merge_outputs=True)        # predict mode: no zoneout
    base = rnn.RNNCell(50)
    base.initialize()
    base.share_parameters(cell.base_cell.collect_params())
    ref, _ = base.unroll(3, x, merge_outputs=True)
    np.testing.assert_allclose(out_p.asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-6)


def test_residual_cell_adds_input():
    base = rnn.GRUCell(4)
    cell = rnn.ResidualCell(base)
    cell.initialize()
    x = nd.random.uniform(shape=(2, 3, 4))
    out, _ = cell.unroll(3, x, merge_outputs=True)
    base._modified = False
    ref, _ = base.unroll(3, x, merge_outputs=True)
    np.testing.assert_allclose(out.asnumpy(), ref.asnumpy() + x.asnumpy(), rtol=1e-6)
    bad = rnn.ResidualCell(rnn.GRUCell(3))
    bad.initialize()
    with pytest.raises(ValueError, match='same shape'):
        bad(nd.ones((2, 4)), bad.begin_state(2))


# ---- variational dropout ---------------------------------------------------------------------

class EchoCell(rnn.RecurrentCell):
    """Outputs its input, or its first state when ``echo_state``; the state passes through."""

    def __init__(self, size, echo_state=False):
        super().__init__()
        self._size, self._echo_state = size, echo_state

    def state_info(self, batch_size=0):
        return [{'shape': (batch_size, self._size), '__layout__': 'NC'}]

    def forward(self, inputs, states):
        return (states[0] if self._echo_state else inputs), [states[0]]


@pytest.mark.parametrize('which', ['inputs', 'outputs'])
def test_variational_dropout_mask_constant_across_steps(which):
    kw = {'drop_' + which: 0.5}
    cell = rnn.VariationalDropoutCell(EchoCell(30), **kw)
    x = nd.ones((8, 6, 30))
    with autograd.record():
        out, _ = cell.unroll(6, x, merge_outputs=True)
        out_b, _ = cell.unroll(6, x, merge_outputs=True)
    o = out.asnumpy()
    assert set(np.unique(o)) == {0.0, 2.0}
    for t in range(1, 6):
        np.testing.assert_array_equal(o[:, t], o[:, 0])     # same mask at every step
    assert (o[0, 0] != o[1, 0]).any()                       # one mask per sequence
    assert (out_b.asnumpy()[:, 0] != o[:, 0]).any()         # refreshed at each unroll
    # Step by step: the mask stays until reset().
    states = cell.begin_state(8)
    with autograd.record():
        a, states = cell(x[:, 0], states)
        b, states = cell(x[:, 1], states)
        cell.reset()
        c, states = cell(x[:, 2], states)
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    assert (a.asnumpy() != c.asnumpy()).any()
    out_p, _ = cell.unroll(6, x, merge_outputs=True)        # no dropout outside training
    np.testing.assert_array_equal(out_p.asnumpy(), x.asnumpy())


def test_variational_dropout_states_and_independent_masks():
    cell = rnn.VariationalDropoutCell(EchoCell(40, echo_state=True), drop_states=0.5)
    h0 = nd.ones((6, 40))
    with autograd.record():
        out, st = cell.unroll(5, nd.ones((6, 5, 40)), begin_state=[h0], merge_outputs=True)
    o = out.asnumpy()
    # the state mask is applied to the state entering every step (the same mask each time)
    m = o[:, 0]
    assert set(np.unique(m)) == {0.0, 2.0}
    for t in range(1, 5):
        np.testing.assert_array_equal(o[:, t], m ** (t + 1))
    both = rnn.VariationalDropoutCell(EchoCell(200), drop_inputs=0.5, drop_outputs=0.5)
    with autograd.record():
        out, _ = both.unroll(2, nd.ones((4, 2, 200)), merge_outputs=True)
    assert (both.drop_inputs_mask is None and both.drop_outputs_mask is None)  # fused path
    v = out.asnumpy()[:, 0]
    # product of two independent masks: values 0 or 4, P(4) = 1/4
    assert set(np.unique(v)) == {0.0, 4.0} and 0.15 < (v == 4).mean() < 0.35
    with autograd.record():
        s, _ = both(nd.ones((4, 200)), both.begin_state(4))
    assert (both.drop_inputs_mask.asnumpy() != both.drop_outputs_mask.asnumpy()).any()


def test_variational_dropout_with_zero_rates_is_base_cell():
    base = rnn.LSTMCell(4)
    cell = rnn.VariationalDropoutCell(base)
    cell.initialize()
    x = nd.random.uniform(shape=(2, 3, 5))
    with autograd.record():
        out, st = cell.unroll(3, x, merge_outputs=True)
    base._modified = False
    ref, rst = base.unroll(3, x, merge_outputs=True)
    np.testing.assert_array_equal(out.asnumpy(), ref.asnumpy())
    with pytest.raises(ValueError, match='drop_inputs'):
        rnn.VariationalDropoutCell(rnn.GRUCell(2), drop_inputs=1.0)
    with pytest.raises(ValueError, match='state dropout'):
        rnn.VariationalDropoutCell(rnn.BidirectionalCell(rnn.GRUCell(2), rnn.GRUCell(2)),
                                   drop_states=0.1)


# ---- cell arguments and custom cells ----------------------------------------------------------

def test_cell_argument_errors():
    with pytest.raises(ValueError, match='hidden_size'):
        rnn.LSTMCell(0)
    with pytest.raises(ValueError, match='activation'):
        rnn.RNNCell(3, activation='swishy')
    with pytest.raises(ValueError, match='projection_size'):
        rnn.LSTMPCell(4, -1)
    cell = rnn.GRUCell(3, input_size=4)
    cell.initialize()
    with pytest.raises(ValueError, match='4'):
        cell(nd.ones((2, 5)), cell.begin_state(2))
    with pytest.raises(ValueError, match='begin state'):
        cell(nd.ones((2, 4)), [nd.ones((3, 3))])


def test_deferred_input_size_and_flattened_input():
    cell = rnn.LSTMCell(3)
    cell.initialize()
    assert cell.i2h_weight.shape == (12, 0)
    out, _ = cell(nd.ones((2, 2, 3)), cell.begin_state(2))      # flattened like Dense
    assert cell.i2h_weight.shape == (12, 6) and out.shape == (2, 3)


def test_hybrid_forward_subclass_is_used():
    class Doubled(rnn.RNNCell):
        def hybrid_forward(self, F, inputs, states, i2h_weight, h2h_weight, i2h_bias,
                           h2h_bias):
            h = F.tanh(F.FullyConnected(inputs, i2h_weight, i2h_bias) +
                       F.FullyConnected(states[0], h2h_weight, h2h_bias))
            return 2 * h, [h]
    cell = Doubled(3)
    cell.initialize()
    ref = rnn.RNNCell(3)
    ref.initialize()
    x = nd.random.uniform(shape=(2, 4, 5))
    out, st = cell.unroll(4, x, merge_outputs=True)
    ref(x[:, 0], ref.begin_state(2))
    ref.share_parameters(cell.collect_params())
    rout, rst = ref.unroll(4, x, merge_outputs=True)
    np.testing.assert_allclose(st[0].asnumpy(), rst[0].asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(out.asnumpy()[:, -1], 2 * rst[0].asnumpy(), rtol=1e-6)


# ---- layers -----------------------------------------------------------------------------------

def _layer_as_cells(layer):
    """The stack of cells equal to ``layer`` (sharing its parameter values)."""
    mode = layer._mode
    H, P = layer._hidden_size, layer._projection_size

    def make():
        if mode == 'lstm':
            return rnn.LSTMPCell(H, P) if P else rnn.LSTMCell(H)
        if mode == 'gru':
            return rnn.GRUCell(H)
        return rnn.RNNCell(H, activation=mode[4:])
    stack = rnn.SequentialRNNCell()
    for i in range(layer._num_layers):
        stack.add(rnn.BidirectionalCell(make(), make()) if layer._dir == 2 else make())
    return stack


@pytest.mark.parametrize('kind,kw', [
    ('LSTM', dict(num_layers=2, bidirectional=True)),
    ('LSTM', dict(projection_size=2, num_layers=2)),
    ('GRU', dict(num_layers=2, layout='NTC')),
    ('RNN', dict(activation='tanh', bidirectional=True)),
])
def test_layer_equals_stacked_cells(kind, kw):
    layer = getattr(rnn, kind)(3, input_size=4, **kw)
    layer.initialize()
    randomize(layer)
    stack = _layer_as_cells(layer)
    stack.initialize()
    T, N = 5, 2
    layout = layer._layout
    x = nd.random.uniform(shape=(T, N, 4) if layout == 'TNC' else (N, T, 4))
    stack.unroll(T, x, layout=layout, merge_outputs=True)     # finish deferred shapes
    lp = layer.collect_params()
    D = layer._dir
    for key, p in stack.collect_params().items():
        parts = key.split('.')
        layer_idx = int(parts[0])
        d = 'r' if len(parts) == 3 and parts[1] == 'r_cell' else 'l'
        p.set_data(lp[f'{d}{layer_idx}_{parts[-1]}'].data())
    out = layer(x)
    ref, _ = stack.unroll(T, x, layout=layout, merge_outputs=True)
    np.testing.assert_allclose(out.asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-6)
    assert out.shape == ((T, N) if layout == 'TNC' else (N, T)) + (3 * D if not
                                                                   layer._projection_size
                                                                   else 2 * D,)


def test_layer_states_shapes_and_call_forms():
    layer = rnn.LSTM(5, num_layers=2, bidirectional=True, projection_size=3)
    layer.initialize()
    x = nd.random.uniform(shape=(4, 2, 6))
    assert [i['shape'] for i in layer.state_info(2)] == [(4, 2, 3), (4, 2, 5)]
    out = layer(x)
    assert isinstance(out, xpnet.NDArray) and out.shape == (4, 2, 6)
    out, (h, c) = layer(x, layer.begin_state(2))
    assert h.shape == (4, 2, 3) and c.shape == (4, 2, 5)
    with pytest.raises(ValueError, match='Invalid recurrent state shape|invalid recurrent'):
        layer(x, [nd.zeros((2, 2, 3)), nd.zeros((4, 2, 5))])
    with pytest.raises(ValueError, match='input has 7 features'):
        layer(nd.ones((4, 2, 7)))
    gru = rnn.GRU(4)
    gru.initialize()
    out, h = gru(x, nd.zeros((1, 2, 4)))                     # one array as the state
    assert len(h) == 1 and h[0].shape == (1, 2, 4)
    assert list(rnn.RNN(3, num_layers=2, bidirectional=True).collect_params())[:5] == [
        'l0_i2h_weight', 'l0_h2h_weight', 'l0_i2h_bias', 'l0_h2h_bias', 'r0_i2h_weight']
    assert rnn.LSTM(3, num_layers=2, bidirectional=True).r1_i2h_weight.shape == (12, 6)


def test_layer_sequence_length_and_errors():
    layer = rnn.GRU(3, bidirectional=True, use_sequence_length=True, input_size=2)
    layer.initialize()
    x = nd.random.uniform(shape=(5, 3, 2))
    with pytest.raises(ValueError, match='sequence_length'):
        layer(x)
    out, st = layer(x, layer.begin_state(3), nd.array([5, 2, 3]))
    o = out.asnumpy()
    assert not o[2:, 1].any() and o[:2, 1].all() and not o[3:, 2].any()
    for bad in [dict(layout='CTN'), dict(dropout=1.0), dict(num_layers=0),
                dict(state_clip_min=-1)]:
        with pytest.raises(ValueError):
            rnn.LSTM(3, **bad)
    with pytest.raises(ValueError, match='activation'):
        rnn.RNN(3, activation='sigmoid')


def test_layer_dropout_between_layers_only_in_training():
    layer = rnn.LSTM(20, num_layers=2, dropout=0.5, input_size=4)
    layer.initialize()
    x = nd.random.uniform(shape=(3, 2, 4))
    a, b = layer(x).asnumpy(), layer(x).asnumpy()
    np.testing.assert_array_equal(a, b)
    with autograd.record():
        c = layer(x)
    assert np.abs(c.asnumpy() - a).max() > 1e-4


def test_layer_gradient_check_with_clip_and_projection():
    class Wrap(Block):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x, h, c):
            out, st = self.layer(x, [h, c])
            return [out] + st
    layer = rnn.LSTM(3, num_layers=2, bidirectional=True, projection_size=2, input_size=2,
                     state_clip_min=-0.3, state_clip_max=0.3, state_clip_nan=True)
    layer.initialize()
    randomize(layer, scale=0.8)
    check_layer_grad(Wrap(layer), [rnd(3, 2, 2), rnd(4, 2, 2), rnd(4, 2, 3)])


def test_layer_trains_and_saves(tmp_path):
    layer = rnn.LSTM(8, layout='NTC')
    head = xpnet.layers.Dense(1, flatten=False)
    layer.initialize()
    head.initialize()
    x = nd.random.uniform(shape=(16, 6, 3))
    y = x.sum(axis=2, keepdims=True).asnumpy().cumsum(axis=1) / 3
    y = xpnet.array(y)
    params = list(layer.collect_params().values()) + list(head.collect_params().values())
    losses = []
    for _ in range(60):
        with autograd.record():
            loss = ((head(layer(x)) - y) ** 2).mean()
        loss.backward()
        for p in params:
            p.data()._data -= 0.3 * p.grad()._data
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    layer.save_parameters(str(tmp_path / 'lstm.params'))
    other = rnn.LSTM(8, layout='NTC')
    other.load_parameters(str(tmp_path / 'lstm.params'))
    np.testing.assert_array_equal(other(x).asnumpy(), layer(x).asnumpy())


def test_cells_train_inside_estimator():
    """A VariationalDropoutCell(LSTMPCell) sequence classifier learns with the Estimator."""
    from xpnet.data import ArrayDataset, DataLoader
    from xpnet.estimator import Estimator

    class Classifier(Block):
        def __init__(self):
            super().__init__()
            self.cell = rnn.VariationalDropoutCell(rnn.LSTMPCell(16, 8), drop_inputs=0.1,
                                                   drop_states=0.1, drop_outputs=0.1)
            self.out = xpnet.layers.Dense(2)

        def forward(self, x):
            _, states = self.cell.unroll(x.shape[1], x, layout='NTC', merge_outputs=True)
            return self.out(states[0])

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 6, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.float32)       # sign of the running sum
    loader = DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True)
    net = Classifier()
    net.initialize(xpnet.init.Xavier())
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.02})
    acc = xpnet.metric.Accuracy()
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), train_metrics=[acc],
                    trainer=trainer)
    est.fit(loader, epochs=6)
    assert acc.get()[1] > 0.85
