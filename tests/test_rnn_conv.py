"""Convolutional recurrent cells: state/output shapes for every cell in 1-D/2-D/3-D and both
layouts, channels-last numbers against the MXNet (channels-first) oracle, gradient checks
through unrolled steps, and argument errors."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet.layers import Block, LeakyReLU, rnn
from conftest import oracle
from gradcheck import check_layer_grad

R = np.random.default_rng(5)
DATA = oracle('rnn.npz')

LAYOUTS = {1: ('NCW', 'NWC'), 2: ('NCHW', 'NHWC'), 3: ('NCDHW', 'NDHWC')}
SPATIAL = {1: (6,), 2: (5, 4), 3: (4, 3, 5)}
KINDS = {'RNN': 1, 'LSTM': 2, 'GRU': 1}


def cell_class(kind, dims):
    return getattr(rnn, f'Conv{dims}D{kind}Cell')


@pytest.mark.parametrize('kind', sorted(KINDS))
@pytest.mark.parametrize('dims', [1, 2, 3])
@pytest.mark.parametrize('last', [False, True])
def test_conv_cell_shapes(kind, dims, last):
    layout = LAYOUTS[dims][last]
    spatial = SPATIAL[dims]
    C, hidden, N, T = 3, 4, 2, 3
    in_shape = spatial + (C,) if last else (C,) + spatial
    cell = cell_class(kind, dims)(in_shape, hidden, i2h_kernel=3, h2h_kernel=3, i2h_pad=1,
                                  conv_layout=layout)
    # with i2h_pad=1 and a 3-kernel the state keeps the input's spatial size
    state_shape = (N,) + (spatial + (hidden,) if last else (hidden,) + spatial)
    info = cell.state_info(N)
    assert len(info) == KINDS[kind]
    assert all(i['shape'] == state_shape and i['__layout__'] == layout for i in info)
    G = {'RNN': 1, 'LSTM': 4, 'GRU': 3}[kind] * hidden
    k = (3,) * dims
    assert cell.i2h_weight.shape == ((G,) + k + (C,) if last else (G, C) + k)
    assert cell.h2h_weight.shape == ((G,) + k + (hidden,) if last else (G, hidden) + k)
    assert cell.i2h_bias.shape == (G,) and cell.h2h_bias.shape == (G,)
    cell.initialize()
    x = nd.random.uniform(shape=(N, T) + in_shape)
    out, states = cell.unroll(T, x, layout='NTC', merge_outputs=True)
    assert out.shape == (N, T) + state_shape[1:]
    assert [s.shape for s in states] == [state_shape] * KINDS[kind]
    o, st = cell(x[:, 0], cell.begin_state(N))
    assert o.shape == state_shape


@pytest.mark.parametrize('dims', [1, 2, 3])
def test_conv_cell_unpadded_output_size(dims):
    spatial = SPATIAL[dims]
    cell = cell_class('LSTM', dims)((2,) + spatial, 3, i2h_kernel=2, h2h_kernel=(1,) * dims,
                                    i2h_dilate=2)
    expect = tuple(s - 2 for s in spatial)
    assert cell.state_info(1)[0]['shape'] == (1, 3) + expect


CONV_CASES = sorted({k.split('/')[0] for k in DATA if k.startswith('conv')})


def _to_last(a, dims):
    """(..., C, *S) -> (..., *S, C) for the trailing 1 + dims axes."""
    nd_ = a.ndim
    c = nd_ - dims - 1
    return np.moveaxis(a, c, -1)


@pytest.mark.parametrize('case', CONV_CASES)
def test_channels_last_matches_gluon_channels_first(case, ctx):
    d = {k.split('/', 1)[1]: v for k, v in DATA.items() if k.startswith(case + '/')}
    spec = json.loads(str(d['spec']))
    kind, kw = spec['build'][0], dict(spec['build'][1])
    dims = int(kind[4])
    if isinstance(kw.get('activation'), list):
        kw['activation'] = LeakyReLU(kw['activation'][1])
    shape = tuple(kw['input_shape'])
    kw['input_shape'] = shape[1:] + shape[:1]
    kw['conv_layout'] = LAYOUTS[dims][1]
    cell = getattr(rnn, kind)(**kw)
    cell.initialize(ctx=ctx)
    for name, p in cell.collect_params().items():
        v = d['p:' + name]
        p.set_data(_to_last(v, dims) if v.ndim > 1 else v)
    call = spec['call']
    x = xpnet.array(_to_last(d['x'], dims), ctx=ctx)
    x.attach_grad()
    states = None
    if spec['states']:
        states = [xpnet.array(_to_last(d[f'h{i}'], dims), ctx=ctx)
                  for i in range(len(cell.state_info()))]
        for s in states:
            s.attach_grad()
    vl = xpnet.array(d['vl'], ctx=ctx) if 'vl' in d else None
    layout = call['layout']
    length = d['x'].shape[layout.find('T')]
    with autograd.record():
        out, new = cell.unroll(length, x, begin_state=states, layout=layout,
                               merge_outputs=True, valid_length=vl)
        loss = (out * xpnet.array(_to_last(d['head_out'], dims), ctx=ctx)).sum()
        for i, s in enumerate(new):
            loss = loss + (s * xpnet.array(_to_last(d[f'head_s{i}'], dims), ctx=ctx)).sum()
    loss.backward()
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.asnumpy(), _to_last(d['out'], dims), **tol)
    for i, s in enumerate(new):
        np.testing.assert_allclose(s.asnumpy(), _to_last(d[f's{i}'], dims), **tol)
    np.testing.assert_allclose(x.grad.asnumpy(), _to_last(d['dx'], dims), **tol)
    for i, s in enumerate(states or []):
        np.testing.assert_allclose(s.grad.asnumpy(), _to_last(d[f'dh{i}'], dims), **tol)
    for name, p in cell.collect_params().items():
        g = d['g:' + name]
        np.testing.assert_allclose(p.grad().asnumpy(), _to_last(g, dims) if g.ndim > 1 else g,
                                   err_msg=name, **tol)


class Unrolled(Block):
    def __init__(self, cell, length, valid_length=None):
        super().__init__()
        self.cell = cell
        self._length, self._vl = length, valid_length

    def forward(self, x, *states):
        vl = None if self._vl is None else xpnet.array(self._vl, ctx=x.context)
        out, st = self.cell.unroll(self._length, x, begin_state=list(states),
                                   merge_outputs=True, valid_length=vl)
        return [out] + list(st)


@pytest.mark.parametrize('kind,dims,layout,act', [
    ('LSTM', 2, 'NCHW', 'tanh'), ('LSTM', 1, 'NWC', 'tanh'), ('GRU', 2, 'NHWC', 'tanh'),
    ('GRU', 1, 'NCW', 'softsign'), ('RNN', 3, 'NCDHW', 'tanh'), ('LSTM', 1, 'NCW', 'leaky'),
])
def test_conv_cell_gradients(ctx, kind, dims, layout, act):
    spatial = {1: (4,), 2: (3, 3), 3: (2, 3, 2)}[dims]
    last = layout.endswith('C')
    C = 2
    in_shape = spatial + (C,) if last else (C,) + spatial
    activation = LeakyReLU(0.3) if act == 'leaky' else act
    cell = cell_class(kind, dims)(in_shape, 2, i2h_kernel=3, h2h_kernel=3, i2h_pad=1,
                                  conv_layout=layout, activation=activation)
    cell.initialize(ctx=ctx)
    rng = np.random.default_rng(1)
    for p in cell.collect_params().values():
        p.set_data(rng.uniform(-0.5, 0.5, p.shape))
    N, T = 2, 2
    states = [R.uniform(-1, 1, i['shape']) for i in cell.state_info(N)]
    x = R.uniform(-1, 1, (N, T) + in_shape)
    check_layer_grad(Unrolled(cell, T, valid_length=[2, 1] if kind == 'LSTM' else None),
                     [x] + states, ctx=ctx)


def test_stepping_equals_unroll_and_deferred_channels():
    cell = rnn.Conv2DGRUCell((0, 5, 5), 3, i2h_kernel=3, h2h_kernel=3)
    cell.initialize()
    assert cell.i2h_weight.shape == (9, 0, 3, 3)
    x = nd.random.uniform(shape=(2, 4, 2, 5, 5))
    out, st = cell.unroll(4, x, merge_outputs=True)
    assert cell.i2h_weight.shape == (9, 2, 3, 3) and out.shape == (2, 4, 3, 3, 3)
    states = cell.begin_state(2)
    for t in range(4):
        o, states = cell(x[:, t], states)
    np.testing.assert_allclose(o.asnumpy(), out.asnumpy()[:, -1], rtol=1e-5, atol=1e-6)


def test_conv_cell_errors():
    with pytest.raises(ValueError, match='odd'):
        rnn.Conv2DLSTMCell((3, 8, 8), 4, i2h_kernel=3, h2h_kernel=(3, 2))
    with pytest.raises(ValueError, match='odd'):
        rnn.Conv1DGRUCell((3, 8), 4, i2h_kernel=3, h2h_kernel=4)
    with pytest.raises(ValueError, match='conv_layout'):
        rnn.Conv2DRNNCell((3, 8, 8), 4, 3, 3, conv_layout='NCW')
    with pytest.raises(ValueError, match='tuple/list of 3'):
        rnn.Conv3DRNNCell((3, 4, 4, 4), 4, i2h_kernel=(3, 3), h2h_kernel=3)
    with pytest.raises(ValueError, match='input_shape'):
        rnn.Conv2DLSTMCell((3, 8), 4, 3, 3)
    with pytest.raises(ValueError, match='does not fit'):
        rnn.Conv1DRNNCell((3, 2), 4, i2h_kernel=5, h2h_kernel=3)
    with pytest.raises(ValueError, match='hidden_channels'):
        rnn.Conv1DRNNCell((3, 8), 0, 3, 3)
    with pytest.raises(ValueError, match='activation'):
        rnn.Conv1DRNNCell((3, 8), 2, 3, 3, activation='nope')
    cell = rnn.Conv2DLSTMCell((3, 8, 8), 4, 3, 3, i2h_pad=1)
    cell.initialize()
    with pytest.raises(ValueError, match=r'\(3, 8, 8\)'):
        cell(nd.ones((2, 3, 7, 8)), cell.begin_state(2))
    with pytest.raises(ValueError, match='state of shape'):
        cell(nd.ones((2, 3, 8, 8)), [nd.ones((2, 4, 8, 8)), nd.ones((2, 4, 7, 8))])


def test_conv_lstm_learns_identity_of_previous_frame():
    """A tiny ConvLSTM fits 'output the previous frame' in a few dozen steps."""
    cell = rnn.Conv1DLSTMCell((1, 8), 4, i2h_kernel=3, h2h_kernel=3, i2h_pad=1)
    head = xpnet.layers.Dense(1, flatten=False)
    cell.initialize(xpnet.init.Xavier())
    head.initialize()
    rng = np.random.default_rng(0)
    x = xpnet.array(rng.uniform(0, 1, (8, 5, 1, 8)))
    target = xpnet.array(np.concatenate([np.zeros((8, 1, 8)), x.asnumpy()[:, :-1, 0]], 1))
    params = list(cell.collect_params().values()) + list(head.collect_params().values())
    losses = []
    for _ in range(80):
        with autograd.record():
            out, _ = cell.unroll(5, x, merge_outputs=True)            # (N, T, 4, 8)
            pred = head(out.transpose((0, 1, 3, 2))).reshape((8, 5, 8))
            loss = ((pred - target) ** 2).mean()
        loss.backward()
        for p in params:
            p.data()._data -= 0.5 * p.grad()._data
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
