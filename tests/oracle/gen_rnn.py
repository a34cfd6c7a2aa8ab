"""Reference numbers for the recurrent cells and layers, computed with MXNet Gluon 1.9.1.

Run with the MXNet venv (never imported by the tests):
    /work/venvs/mx/bin/python tests/oracle/gen_rnn.py
Writes tests/data/rnn.npz. For each case '<case>/<key>':
    spec        JSON: {"kind": "cell"|"layer", "build": <tree>, "call": {...}, "train": bool}
    x           input (the sequence in the call's layout; split into steps if call.list)
    vl          valid lengths (when used)
    h<i>        begin states given to the call (absent: the call creates them)
    out         outputs (stacked along the layout's time axis when a list)
    s<i>        returned states
    head_out, head_s<i>   random output gradients (loss = sum(head * value))
    dx, dh<i>   gradients of the input and begin states
    p:<name>, g:<name>    parameters (structural names) and their gradients
A build tree is ["<CellClass>", {kwargs}] or ["SequentialRNNCell", [trees]],
["BidirectionalCell", [l, r]], ["ResidualCell", tree], ["ZoneoutCell", tree, {kwargs}],
["VariationalDropoutCell", tree, {kwargs}], or ["<Layer>", {kwargs}] for layers.
"""
import json
import os

import numpy as np
from mxnet import autograd, gluon, nd

rng = np.random.RandomState(7)
CONTRIB = {'LSTMPCell', 'VariationalDropoutCell', 'Conv1DRNNCell', 'Conv2DRNNCell',
           'Conv3DRNNCell', 'Conv1DLSTMCell', 'Conv2DLSTMCell', 'Conv3DLSTMCell',
           'Conv1DGRUCell', 'Conv2DGRUCell', 'Conv3DGRUCell'}


def build(tree):
    kind = tree[0]
    if kind == 'SequentialRNNCell':
        cell = gluon.rnn.SequentialRNNCell()
        for sub in tree[1]:
            cell.add(build(sub))
        return cell
    if kind == 'BidirectionalCell':
        return gluon.rnn.BidirectionalCell(build(tree[1][0]), build(tree[1][1]))
    if kind == 'ResidualCell':
        return gluon.rnn.ResidualCell(build(tree[1]))
    if kind == 'ZoneoutCell':
        return gluon.rnn.ZoneoutCell(build(tree[1]), **tree[2])
    if kind == 'VariationalDropoutCell':
        return gluon.contrib.rnn.VariationalDropoutCell(build(tree[1]), **tree[2])
    mod = gluon.contrib.rnn if kind in CONTRIB else gluon.rnn
    kwargs = dict(tree[1])
    if isinstance(kwargs.get('activation'), list):        # ['LeakyReLU', alpha]
        kwargs['activation'] = gluon.nn.LeakyReLU(kwargs['activation'][1])
    return getattr(mod, kind)(**kwargs)


def structural_params(block):
    """Parameters under xpnet's structural names ('base_cell.i2h_weight', 'l0_h2h_bias')."""
    if isinstance(block, gluon.rnn.rnn_layer._RNNLayer):
        pre = block.prefix
        return {k[len(pre):]: v for k, v in block.collect_params().items()}
    return dict(block._collect_params_with_prefix())


def unfused_reference(layer, x, states, vl):
    """The layer computed as its equivalent stack of cells (Gluon's ``_unfuse``, sharing the
    layer's parameters). Needed for ``use_sequence_length``: MXNet 1.9.1's CPU RNN operator
    silently ignores ``sequence_length`` (only its cuDNN path masks), while the cells
    implement the documented semantics (zero outputs after each length, last valid state)."""
    stack = layer._unfuse()
    L, D, ns = layer._num_layers, layer._dir, len(states)
    begin = [s[i * D + d] for i in range(L) for d in range(D) for s in states]
    T = x.shape[layer._layout.find('T')]
    outputs, st = stack.unroll(T, x, begin_state=begin, layout=layer._layout,
                               merge_outputs=True, valid_length=vl)
    new_states = [nd.stack(*[st[(i * D + d) * ns + j] for i in range(L) for d in range(D)],
                           axis=0) for j in range(ns)]
    return outputs, new_states


def rand(*shape, scale=0.5):
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


CELL_CASES = [
    # name, build tree, input shape (layout order), call kwargs, begin states?, train
    ('rnn_tanh', ['RNNCell', dict(hidden_size=4, input_size=3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('rnn_relu_tnc', ['RNNCell', dict(hidden_size=4, activation='relu', input_size=3)],
     (4, 3, 3), dict(layout='TNC', merge_outputs=True), True, True),
    ('rnn_softsign', ['RNNCell', dict(hidden_size=4, activation='softsign', input_size=3)],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True), True, True),
    ('lstm', ['LSTMCell', dict(hidden_size=4, input_size=3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('lstm_tnc_list', ['LSTMCell', dict(hidden_size=4, input_size=3)], (4, 3, 3),
     dict(layout='TNC', merge_outputs=False, list=True), True, True),
    ('lstm_custom_act', ['LSTMCell', dict(hidden_size=4, input_size=3, activation='softsign',
                                          recurrent_activation='tanh')], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('gru', ['GRUCell', dict(hidden_size=4, input_size=3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('lstmp', ['LSTMPCell', dict(hidden_size=5, projection_size=3, input_size=3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('lstm_valid', ['LSTMCell', dict(hidden_size=4, input_size=3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True, valid_length=[4, 1, 2]), True, True),
    ('gru_valid_list', ['GRUCell', dict(hidden_size=4, input_size=3)], (4, 3, 3),
     dict(layout='TNC', merge_outputs=False, list=True, valid_length=[2, 4, 3]), True, True),
    ('lstmp_valid', ['LSTMPCell', dict(hidden_size=5, projection_size=3, input_size=3)],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True, valid_length=[3, 4, 1]), True, True),
    ('rnn_custom_valid', ['RNNCell', dict(hidden_size=4, activation='softsign',
                                          input_size=3)],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True, valid_length=[3, 4, 1]), True, True),
    ('sequential', ['SequentialRNNCell', [['LSTMCell', dict(hidden_size=4, input_size=3)],
                                          ['GRUCell', dict(hidden_size=3, input_size=4)]]],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True), True, True),
    ('sequential_valid', ['SequentialRNNCell', [['RNNCell', dict(hidden_size=4, input_size=3)],
                                                ['LSTMCell', dict(hidden_size=3,
                                                                  input_size=4)]]],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True, valid_length=[2, 4, 3]), True, True),
    ('bidirectional', ['BidirectionalCell', [['LSTMCell', dict(hidden_size=4, input_size=3)],
                                             ['GRUCell', dict(hidden_size=3, input_size=3)]]],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True), True, True),
    ('bidirectional_valid', ['BidirectionalCell', [['LSTMCell', dict(hidden_size=4,
                                                                     input_size=3)],
                                                   ['RNNCell', dict(hidden_size=3,
                                                                    input_size=3)]]],
     (4, 3, 3), dict(layout='TNC', merge_outputs=True, valid_length=[2, 4, 3]), True, True),
    ('bidirectional_list', ['BidirectionalCell', [['GRUCell', dict(hidden_size=2,
                                                                   input_size=3)],
                                                  ['GRUCell', dict(hidden_size=2,
                                                                   input_size=3)]]],
     (3, 4, 3), dict(layout='NTC', merge_outputs=False, list=True), False, True),
    ('residual', ['ResidualCell', ['GRUCell', dict(hidden_size=3, input_size=3)]], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('residual_valid', ['ResidualCell', ['LSTMCell', dict(hidden_size=3, input_size=3)]],
     (3, 4, 3), dict(layout='NTC', merge_outputs=True, valid_length=[1, 4, 2]), True, True),
    ('zoneout_predict', ['ZoneoutCell', ['RNNCell', dict(hidden_size=4, input_size=3)],
                         dict(zoneout_outputs=0.5, zoneout_states=0.5)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, False),
    ('vardrop_predict', ['VariationalDropoutCell', ['LSTMCell', dict(hidden_size=4,
                                                                     input_size=3)],
                         dict(drop_inputs=0.3, drop_states=0.3, drop_outputs=0.3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, False),
    ('vardrop_zero_rates', ['VariationalDropoutCell', ['GRUCell', dict(hidden_size=4,
                                                                       input_size=3)],
                            dict()], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('no_begin_state', ['LSTMCell', dict(hidden_size=4, input_size=3)], (3, 4, 3),
     dict(layout='NTC', merge_outputs=True), False, True),
]

# Convolutional cells: MXNet runs only the channels-first layouts on CPU; the tests check the
# channels-last ones against these numbers with transposed inputs and weights.
CONV_CASES = [
    ('conv1d_rnn', ['Conv1DRNNCell', dict(input_shape=(2, 5), hidden_channels=2, i2h_kernel=3,
                                          h2h_kernel=3)], (2, 3, 2, 5),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('conv2d_rnn_relu_pad', ['Conv2DRNNCell', dict(input_shape=(2, 4, 4), hidden_channels=2,
                                                   i2h_kernel=3, h2h_kernel=3, i2h_pad=1,
                                                   activation='relu')], (2, 3, 2, 4, 4),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('conv3d_rnn', ['Conv3DRNNCell', dict(input_shape=(2, 3, 3, 3), hidden_channels=2,
                                          i2h_kernel=(1, 2, 2), h2h_kernel=(1, 3, 1))],
     (3, 2, 2, 3, 3, 3), dict(layout='TNC', merge_outputs=True), True, True),
    ('conv1d_lstm_dilate', ['Conv1DLSTMCell', dict(input_shape=(2, 7), hidden_channels=2,
                                                   i2h_kernel=3, h2h_kernel=3, i2h_pad=2,
                                                   i2h_dilate=2, h2h_dilate=2)],
     (2, 3, 2, 7), dict(layout='NTC', merge_outputs=True), True, True),
    ('conv2d_lstm', ['Conv2DLSTMCell', dict(input_shape=(2, 4, 4), hidden_channels=2,
                                            i2h_kernel=3, h2h_kernel=3, i2h_pad=1)],
     (2, 3, 2, 4, 4), dict(layout='NTC', merge_outputs=True), True, True),
    ('conv2d_lstm_leaky', ['Conv2DLSTMCell', dict(input_shape=(2, 4, 4), hidden_channels=2,
                                                  i2h_kernel=(3, 1), h2h_kernel=(1, 3),
                                                  activation=['LeakyReLU', 0.1])],
     (2, 3, 2, 4, 4), dict(layout='NTC', merge_outputs=True, mx_step=True), True, True),
    ('conv2d_lstm_valid_list', ['Conv2DLSTMCell', dict(input_shape=(2, 3, 3),
                                                       hidden_channels=2, i2h_kernel=3,
                                                       h2h_kernel=3, i2h_pad=1)],
     (3, 3, 2, 3, 3), dict(layout='NTC', merge_outputs=False, list=True,
                           valid_length=[3, 1, 2]), True, True),
    ('conv3d_lstm', ['Conv3DLSTMCell', dict(input_shape=(2, 3, 3, 3), hidden_channels=2,
                                            i2h_kernel=3, h2h_kernel=3, i2h_pad=1)],
     (2, 2, 2, 3, 3, 3), dict(layout='NTC', merge_outputs=True), False, True),
    ('conv1d_gru', ['Conv1DGRUCell', dict(input_shape=(2, 5), hidden_channels=3, i2h_kernel=3,
                                          h2h_kernel=5, i2h_pad=1)], (2, 3, 2, 5),
     dict(layout='NTC', merge_outputs=True), True, True),
    ('conv2d_gru_softsign', ['Conv2DGRUCell', dict(input_shape=(2, 4, 4), hidden_channels=2,
                                                   i2h_kernel=3, h2h_kernel=3,
                                                   activation='softsign')],
     (2, 3, 2, 4, 4), dict(layout='NTC', merge_outputs=True), True, True),
    ('conv3d_gru', ['Conv3DGRUCell', dict(input_shape=(1, 3, 3, 2), hidden_channels=2,
                                          i2h_kernel=(3, 3, 1), h2h_kernel=3,
                                          i2h_pad=(1, 1, 0))],
     (2, 2, 1, 3, 3, 2), dict(layout='NTC', merge_outputs=True), True, True),
]

LAYER_CASES = [
    # name, build tree, input shape (layout order), call kwargs, begin states?, train
    ('layer_rnn_relu', ['RNN', dict(hidden_size=4, num_layers=2, input_size=3)], (4, 3, 3),
     dict(), True, True),
    ('layer_rnn_tanh_bi_ntc', ['RNN', dict(hidden_size=4, activation='tanh', layout='NTC',
                                           bidirectional=True, input_size=3)], (3, 4, 3),
     dict(), True, True),
    ('layer_lstm', ['LSTM', dict(hidden_size=4, num_layers=2, input_size=3)], (4, 3, 3),
     dict(), True, True),
    ('layer_lstm_bi2', ['LSTM', dict(hidden_size=4, num_layers=2, bidirectional=True,
                                     input_size=3)], (4, 3, 3), dict(), True, True),
    ('layer_lstm_nostates', ['LSTM', dict(hidden_size=4, input_size=3, layout='NTC')],
     (3, 4, 3), dict(), False, True),
    # MXNet's CPU LSTM with projection has no training support: forward only (predict mode);
    # its gradients are covered by the LSTMPCell cases.
    ('layer_lstm_proj', ['LSTM', dict(hidden_size=5, num_layers=2, projection_size=3,
                                      input_size=3)], (4, 3, 3), dict(), True, False),
    ('layer_lstm_proj_bi', ['LSTM', dict(hidden_size=5, projection_size=3, bidirectional=True,
                                         input_size=3)], (4, 3, 3), dict(), True, False),
    ('layer_gru_bi2_ntc', ['GRU', dict(hidden_size=4, num_layers=2, bidirectional=True,
                                       layout='NTC', input_size=3)], (3, 4, 3), dict(), True,
     True),
    ('layer_lstm_seqlen_bi', ['LSTM', dict(hidden_size=4, bidirectional=True, input_size=3,
                                           use_sequence_length=True)], (4, 3, 3),
     dict(sequence_length=[2, 4, 3]), True, True),
    ('layer_gru_seqlen', ['GRU', dict(hidden_size=4, num_layers=2, input_size=3,
                                      use_sequence_length=True)], (4, 3, 3),
     dict(sequence_length=[4, 1, 3]), True, True),
    # No case for state_clip_min/max: MXNet 1.9.1's CPU operator ignores them (its output
    # equals the unclipped LSTM); xpnet's clipping is tested in test_rnn.py.
    ('layer_lstm_dropout_predict', ['LSTM', dict(hidden_size=4, num_layers=2, dropout=0.5,
                                                 input_size=3)], (4, 3, 3), dict(), True,
     False),
]


def run_case(name, tree, xshape, call, with_states, train, kind, out):
    block = build(tree)
    block.initialize()
    call = dict(call)
    x = nd.array(rand(*xshape, scale=1.0))
    layout = call['layout'] if kind == 'cell' else tree[1].get('layout', 'TNC')
    batch = xshape[layout.find('N')]
    # Parameter values: random everywhere (biases included).
    params = structural_params(block)
    if kind == 'layer':
        block(x) if not tree[1].get('use_sequence_length') else \
            block(x, sequence_length=nd.array(call['sequence_length']))
    for k, p in sorted(params.items()):
        p.set_data(nd.array(rand(*p.shape)))
    if with_states:
        infos = block.state_info(batch)
        states = [nd.array(rand(*info['shape'])) for info in infos]
    else:
        states = None
    x.attach_grad()
    if states:
        for s in states:
            s.attach_grad()
    vl = call.get('valid_length', call.get('sequence_length'))
    vl_nd = nd.array(vl) if vl is not None else None
    grads = not (kind == 'layer' and tree[1].get('projection_size'))
    scope = autograd.record(train_mode=train) if grads else autograd.pause(train_mode=train)
    with scope:
        if kind == 'cell':
            inputs = x
            if call.get('list'):
                axis = layout.find('T')
                inputs = [x.take(nd.array([t]), axis=axis).squeeze(axis=axis)
                          for t in range(xshape[axis])]
            if call.get('mx_step'):
                # MXNet's unroll calls reset() on every child, which fails when the
                # activation is a Block (LeakyReLU): step by hand instead.
                axis = layout.find('T')
                st = states
                outs = []
                for t in range(xshape[axis]):
                    o, st = block(x.take(nd.array([t]), axis=axis).squeeze(axis=axis), st)
                    outs.append(o)
                outputs, new_states = nd.stack(*outs, axis=axis), st
            else:
                outputs, new_states = block.unroll(xshape[layout.find('T')], inputs,
                                                   begin_state=states, layout=layout,
                                                   merge_outputs=call['merge_outputs'],
                                                   valid_length=vl_nd)
            if isinstance(outputs, list):
                outputs = nd.stack(*outputs, axis=layout.find('T'))
        else:
            if tree[1].get('use_sequence_length'):
                res = unfused_reference(block, x, states, vl_nd)
            else:
                res = block(x, states) if states is not None else block(x)
            if states is None:
                outputs, new_states = res, []
            else:
                outputs, new_states = res
                new_states = list(new_states) if isinstance(new_states, list) else [new_states]
        head_out = rng.standard_normal(outputs.shape).astype(np.float32)
        heads = [rng.standard_normal(s.shape).astype(np.float32) for s in new_states]
        loss = (outputs * nd.array(head_out)).sum()
        for s, h in zip(new_states, heads):
            loss = loss + (s * nd.array(h)).sum()
    if grads:
        loss.backward()
    spec = dict(kind=kind, build=tree, call=call, train=train, states=bool(with_states),
                grads=grads)
    rec = {'spec': np.array(json.dumps(spec)), 'x': x.asnumpy(), 'out': outputs.asnumpy(),
           'head_out': head_out}
    if grads:
        rec['dx'] = x.grad.asnumpy()
    if vl is not None:
        rec['vl'] = np.array(vl, dtype=np.float32)
    if states:
        for i, s in enumerate(states):
            rec[f'h{i}'] = s.asnumpy()
            if grads:
                rec[f'dh{i}'] = s.grad.asnumpy()
    for i, (s, h) in enumerate(zip(new_states, heads)):
        rec[f's{i}'] = s.asnumpy()
        rec[f'head_s{i}'] = h
    for k, p in params.items():
        rec[f'p:{k}'] = p.data().asnumpy()
        if grads:
            rec[f'g:{k}'] = p.grad().asnumpy()
    for k, v in rec.items():
        out[f'{name}/{k}'] = v


def main():
    out = {}
    for case in CELL_CASES + CONV_CASES:
        run_case(*case, kind='cell', out=out)
    for case in LAYER_CASES:
        run_case(*case, kind='layer', out=out)
    path = os.path.join(os.path.dirname(__file__), '..', 'data', 'rnn.npz')
    np.savez_compressed(path, **out)
    print(f'wrote {len(out)} arrays to {os.path.normpath(path)}')


if __name__ == '__main__':
    main()
