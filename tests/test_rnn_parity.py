"""Parity of the recurrent cells and layers with MXNet Gluon 1.9.1: outputs, states and the
gradients of inputs, begin states and every parameter (reference numbers in
tests/data/rnn.npz, made by tests/oracle/gen_rnn.py)."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, ops
from xpnet.layers import rnn
from conftest import oracle

DATA = oracle('rnn.npz')
CASES = sorted({k.split('/')[0] for k in DATA})
RTOL, ATOL = 1e-4, 1e-5


def build(tree):
    kind = tree[0]
    if kind in ('SequentialRNNCell',):
        cell = rnn.SequentialRNNCell()
        for sub in tree[1]:
            cell.add(build(sub))
        return cell
    if kind == 'BidirectionalCell':
        return rnn.BidirectionalCell(build(tree[1][0]), build(tree[1][1]))
    if kind == 'ResidualCell':
        return rnn.ResidualCell(build(tree[1]))
    if kind in ('ZoneoutCell', 'VariationalDropoutCell'):
        return getattr(rnn, kind)(build(tree[1]), **tree[2])
    kwargs = dict(tree[1])
    if isinstance(kwargs.get('activation'), list):        # ['LeakyReLU', alpha]
        kwargs['activation'] = xpnet.layers.LeakyReLU(kwargs['activation'][1])
    return getattr(rnn, kind)(**kwargs)


def case_data(case):
    return {k.split('/', 1)[1]: v for k, v in DATA.items() if k.startswith(case + '/')}


def run_case(d, ctx, stepwise=False):
    """Run the case with xpnet; returns (outputs, states, x, begin_states, block)."""
    spec = json.loads(str(d['spec']))
    block = build(spec['build'])
    block.initialize(ctx=ctx)
    call = spec['call']
    x = xpnet.array(d['x'], ctx=ctx)
    x.attach_grad()
    vl = xpnet.array(d['vl'], ctx=ctx) if 'vl' in d else None
    states = None
    if spec['states']:
        states = []
        i = 0
        while f'h{i}' in d:
            s = xpnet.array(d[f'h{i}'], ctx=ctx)
            s.attach_grad()
            states.append(s)
            i += 1
    if spec['kind'] == 'layer':
        layout = spec['build'][1].get('layout', 'TNC')
        if states is None:
            block(x[:1] if layout == 'TNC' else x[:, :1])   # finish deferred init
    params = block.collect_params()
    expected = {k[2:] for k in d if k.startswith('p:')}
    assert set(params) == expected, (sorted(params), sorted(expected))
    for name, p in params.items():
        p.set_data(d['p:' + name])
    grads = spec.get('grads', True)
    with autograd.record(train_mode=spec['train']):
        if spec['kind'] == 'cell':
            layout = call['layout']
            axis = layout.find('T')
            length = d['x'].shape[axis]
            inputs = x
            if call.get('list'):
                inputs = [x[(slice(None),) * axis + (t,)] for t in range(length)]
            if stepwise:
                steps = inputs if isinstance(inputs, list) else \
                    [x[(slice(None),) * axis + (t,)] for t in range(length)]
                st = states if states is not None else block.begin_state(
                    batch_size=d['x'].shape[layout.find('N')], ctx=ctx)
                outs = []
                for t in range(length):
                    o, st = block(steps[t], st)
                    outs.append(o)
                outputs, new_states = ops.stack(*outs, axis=axis), st
            else:
                outputs, new_states = block.unroll(length, inputs, begin_state=states,
                                                   layout=layout,
                                                   merge_outputs=call['merge_outputs'],
                                                   valid_length=vl)
                if call['merge_outputs'] is False:
                    assert isinstance(outputs, list) and len(outputs) == length
                    outputs = ops.stack(*outputs, axis=axis)
        else:
            if spec['build'][1].get('use_sequence_length'):
                res = block(x, states, sequence_length=vl)
            else:
                res = block(x, states) if states is not None else block(x)
            if states is None:
                assert isinstance(res, xpnet.NDArray)
                outputs, new_states = res, []
            else:
                outputs, new_states = res
        loss = (outputs * xpnet.array(d['head_out'], ctx=ctx)).sum()
        for i, s in enumerate(new_states):
            loss = loss + (s * xpnet.array(d[f'head_s{i}'], ctx=ctx)).sum()
    if grads:
        loss.backward()
    return outputs, new_states, x, states, block


def compare(d, outputs, new_states, x, states, block, grads=True):
    np.testing.assert_allclose(outputs.asnumpy(), d['out'], rtol=RTOL, atol=ATOL,
                               err_msg='outputs')
    assert len(new_states) == len([k for k in d if k.startswith('head_s')])
    for i, s in enumerate(new_states):
        np.testing.assert_allclose(s.asnumpy(), d[f's{i}'], rtol=RTOL, atol=ATOL,
                                   err_msg=f'state {i}')
    if not grads:
        return
    np.testing.assert_allclose(x.grad.asnumpy(), d['dx'], rtol=RTOL, atol=ATOL,
                               err_msg='input gradient')
    for i, s in enumerate(states or []):
        np.testing.assert_allclose(s.grad.asnumpy(), d[f'dh{i}'], rtol=RTOL, atol=ATOL,
                                   err_msg=f'begin state {i} gradient')
    for name, p in block.collect_params().items():
        np.testing.assert_allclose(p.grad().asnumpy(), d['g:' + name], rtol=RTOL, atol=ATOL,
                                   err_msg=f'gradient of {name}')


@pytest.mark.parametrize('case', CASES)
def test_parity_with_gluon(case, ctx):
    d = case_data(case)
    grads = json.loads(str(d['spec'])).get('grads', True)
    compare(d, *run_case(d, ctx), grads=grads)


STEPPABLE = [c for c in CASES if json.loads(str(DATA[c + '/spec']))['kind'] == 'cell'
             and 'valid' not in c and 'bidirectional' not in c]


@pytest.mark.parametrize('case', STEPPABLE)
def test_stepping_equals_gluon_unroll(case):
    """Calling the cell step by step gives the numbers of Gluon's unroll."""
    d = case_data(case)
    compare(d, *run_case(d, xpnet.cpu(), stepwise=True))
