"""Recurrent benchmarks: xpnet against PyTorch CPU (when importable) in the same run.

(a) One training step of a word language model: Embedding 10000x200, one LSTM layer of 200
    units unrolled 35 steps, batch 20, Dense to 10000, softmax cross-entropy, SGD. xpnet runs
    it with the ``LSTM`` layer, with ``LSTMCell.unroll`` and with an explicit per-step loop
    over ``LSTMCell`` calls, each with a dense and a row-sparse embedding gradient; PyTorch
    with ``nn.LSTM`` and with an ``nn.LSTMCell`` loop.
(b) A ``Conv2DLSTMCell`` (input 8x16x16, 16 hidden channels, 3x3 kernels, padding 1) unrolled
    10 steps at batch 8, forward + backward + SGD; PyTorch with two ``nn.Conv2d`` per step.

The cases run round-robin, one step each per cycle, so load changes on a shared machine hit
them alike; the report gives each case's median step time and, for each comparison, the
median of the per-cycle ratios xpnet / PyTorch (measured in the same process).

    python benchmarks/bench_rnn.py [--cycles 20] [--only lm|conv]
"""
import argparse
import os
import sys
import time

import numpy as np

import xpnet
from xpnet import autograd, ops
from xpnet import layers as nn
from xpnet.layers import rnn

try:
    import torch
except ImportError:     # PyTorch is a baseline only, never a dependency
    torch = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_line  # noqa: E402

V, E, H, T, N = 10000, 200, 200, 35, 20
LR = 0.1


# ---- (a) language model step --------------------------------------------------------------------

class XpnetLM(nn.Block):
    def __init__(self, kind, sparse):
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(V, E, sparse_grad=sparse)
        if kind == 'layer':
            self.rnn = rnn.LSTM(H, input_size=E)
        else:
            self.rnn = rnn.LSTMCell(H, input_size=E)
        self.decoder = nn.Dense(V, flatten=False, in_units=H)

    def forward(self, x, states):
        emb = self.embedding(x)                                   # (T, N, E)
        if self.kind == 'layer':
            out, states = self.rnn(emb, states)
        elif self.kind == 'unroll':
            out, states = self.rnn.unroll(T, emb, states, layout='TNC', merge_outputs=True)
        else:                                                     # explicit per-step loop
            outs = []
            for t in range(T):
                o, states = self.rnn(emb[t], states)
                outs.append(o)
            out = ops.stack(*outs, axis=0)
        return self.decoder(out), states


def make_xpnet_lm(kind, sparse):
    xpnet.random.seed(0)
    net = XpnetLM(kind, sparse)
    net.initialize(xpnet.init.Uniform(0.1))
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR})
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = xpnet.array(rng.integers(0, V, (T, N)), dtype='int64')
    y = xpnet.array(rng.integers(0, V, (T * N,)), dtype='int64')
    if kind == 'layer':
        states = net.rnn.begin_state(N)
    else:
        states = net.rnn.begin_state(N)
    state = {'s': states}

    def step():
        with autograd.record():
            logits, new = net(x, state['s'])
            loss = loss_fn(logits.reshape((-1, V)), y)
        loss.backward()
        trainer.step(T * N)
        state['s'] = [s.detach() for s in new]
        return loss
    return step


def make_torch_lm(kind):
    torch.manual_seed(0)

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H) if kind == 'layer' else torch.nn.LSTMCell(E, H)
            self.decoder = torch.nn.Linear(H, V)

        def forward(self, x, states):
            emb = self.embedding(x)
            if kind == 'layer':
                out, states = self.rnn(emb, states)
            else:
                h, c = states
                outs = []
                for t in range(T):
                    h, c = self.rnn(emb[t], (h, c))
                    outs.append(h)
                out, states = torch.stack(outs), (h, c)
            return self.decoder(out), states

    net = LM()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (T, N), generator=g)
    y = torch.randint(0, V, (T * N,), generator=g)
    zeros = torch.zeros(N, H)
    state = {'s': (zeros[None].clone(), zeros[None].clone()) if kind == 'layer'
             else (zeros.clone(), zeros.clone())}

    def step():
        opt.zero_grad(set_to_none=True)
        logits, new = net(x, state['s'])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y)
        loss.backward()
        opt.step()
        state['s'] = tuple(s.detach() for s in new)
        return loss
    return step


# ---- (b) ConvLSTM ------------------------------------------------------------------------------

CB, CT, CC, CH, CS = 8, 10, 8, 16, 16      # batch, steps, in channels, hidden channels, size


def make_xpnet_conv():
    xpnet.random.seed(0)
    cell = rnn.Conv2DLSTMCell((CC, CS, CS), CH, i2h_kernel=3, h2h_kernel=3, i2h_pad=1)
    cell.initialize(xpnet.init.Xavier())
    trainer = xpnet.Trainer(cell.collect_params(), 'sgd', {'learning_rate': 0.01})
    rng = np.random.default_rng(0)
    x = xpnet.array(rng.standard_normal((CB, CT, CC, CS, CS)))
    head = xpnet.array(rng.standard_normal((CB, CT, CH, CS, CS)))

    def step():
        with autograd.record():
            out, _ = cell.unroll(CT, x, layout='NTC', merge_outputs=True)
            loss = (out * head).mean()
        loss.backward()
        trainer.step(1)
        return loss
    return step


def make_torch_conv():
    torch.manual_seed(0)
    i2h = torch.nn.Conv2d(CC, 4 * CH, 3, padding=1)
    h2h = torch.nn.Conv2d(CH, 4 * CH, 3, padding=1)
    params = list(i2h.parameters()) + list(h2h.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((CB, CT, CC, CS, CS), generator=g)
    head = torch.randn((CB, CT, CH, CS, CS), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        h = torch.zeros(CB, CH, CS, CS)
        c = torch.zeros(CB, CH, CS, CS)
        outs = []
        for t in range(CT):
            gates = i2h(x[:, t]) + h2h(h)
            i, f, gg, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        loss = (torch.stack(outs, 1) * head).mean()
        loss.backward()
        opt.step()
        return loss
    return step


# ---- timing ------------------------------------------------------------------------------------

def run(cases, cycles, warmup=2):
    """Round-robin: each cycle runs one step of every case, so load changes on the shared
    machine hit all cases alike. Returns name -> list of step times (s), one per cycle."""
    fns = {name: make() for name, make in cases}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(cycles):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def report(title, times, pairs):
    """Medians per case, and for each pair the median of the per-cycle ratios."""
    print(f'\n{title}')
    for k, v in times.items():
        ms = np.array(v) * 1e3
        q = np.percentile(ms, [25, 75])
        print(f'  {k:36s} median {np.median(ms):7.1f} ms   (IQR {q[0]:.1f}-{q[1]:.1f})')
    for a, b in pairs:
        if a in times and b in times:
            r = np.array(times[a]) / np.array(times[b])
            q = np.percentile(r, [25, 75])
            print(f'  ratio {a} / {b}: {np.median(r):.2f}  (IQR {q[0]:.2f}-{q[1]:.2f})')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cycles', type=int, default=20, help='steps per case (round-robin)')
    ap.add_argument('--only', choices=['lm', 'conv'])
    ap.add_argument('--torch-threads', type=int, default=0,
                    help="PyTorch's intra-op threads (0: its default)")
    args = ap.parse_args()
    have_torch = torch is not None
    print(machine_line())
    if have_torch and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if have_torch:
        print(f'PyTorch {torch.__version__}, {torch.get_num_threads()} threads; '
              f'NumPy {np.__version__}')
    else:
        print('PyTorch not importable: xpnet timings only')
    if args.only in (None, 'lm'):
        cases = [('xpnet LSTM layer (dense emb)', lambda: make_xpnet_lm('layer', False)),
                 ('xpnet LSTM layer (sparse emb)', lambda: make_xpnet_lm('layer', True)),
                 ('xpnet LSTMCell.unroll (dense emb)', lambda: make_xpnet_lm('unroll', False)),
                 ('xpnet LSTMCell.unroll (sparse emb)', lambda: make_xpnet_lm('unroll', True)),
                 ('xpnet LSTMCell step loop (sparse)', lambda: make_xpnet_lm('loop', True))]
        if have_torch:
            cases += [('torch nn.LSTM', lambda: make_torch_lm('layer')),
                      ('torch nn.LSTMCell loop', lambda: make_torch_lm('cell'))]
        times = run(cases, args.cycles)
        report('(a) LM step: Embedding 10000x200, LSTM 200 x 35 steps, batch 20, Dense 10000, '
               'softmax CE, SGD', times,
               [('xpnet LSTM layer (dense emb)', 'torch nn.LSTM'),
                ('xpnet LSTM layer (sparse emb)', 'torch nn.LSTM'),
                ('xpnet LSTMCell.unroll (dense emb)', 'torch nn.LSTMCell loop'),
                ('xpnet LSTMCell.unroll (sparse emb)', 'torch nn.LSTMCell loop'),
                ('xpnet LSTMCell step loop (sparse)', 'torch nn.LSTMCell loop')])
    if args.only in (None, 'conv'):
        cases = [('xpnet Conv2DLSTMCell.unroll', make_xpnet_conv)]
        if have_torch:
            cases.append(('torch 2x Conv2d per step', make_torch_conv))
        times = run(cases, args.cycles)
        report('(b) ConvLSTM: input 8x16x16, 16 hidden, 3x3, 10 steps, batch 8, fwd+bwd+SGD',
               times, [('xpnet Conv2DLSTMCell.unroll', 'torch 2x Conv2d per step')])


if __name__ == '__main__':
    main()
