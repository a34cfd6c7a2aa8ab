"""Cost of the parameter update for the MLP 784-512-512-10 (~670K float32 weights).

Times, in the same run: a hand-written in-place NumPy SGD-momentum update (the floor),
``Trainer.step`` with SGD momentum (optimizer plus the Trainer's bookkeeping), and the bare
``optimizer.update`` loop of every xpnet optimizer. Prints medians and ratios to the floor.

    python benchmarks/bench_optimizer.py [--reps 51] [--rounds 5]
"""
import argparse
import time

import numpy as np

import xpnet
from xpnet import autograd
from xpnet import layers as nn

SIZES, BATCH, LR, MOM = (784, 512, 512, 10), 128, 0.05, 0.9
OPTIMIZERS = ['sgd', 'nag', 'adam', 'adamw', 'rmsprop', 'adagrad', 'adadelta']


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=51)
    ap.add_argument('--rounds', type=int, default=5)
    args = ap.parse_args()

    net = nn.Sequential()
    net.add(nn.Dense(SIZES[1], activation='relu', in_units=SIZES[0]),
            nn.Dense(SIZES[2], activation='relu', in_units=SIZES[1]),
            nn.Dense(SIZES[3], in_units=SIZES[2]))
    net.initialize(init='xavier')
    params = list(net.collect_params().values())
    with autograd.record():
        loss = net(xpnet.array(np.random.randn(BATCH, SIZES[0]))).sum()
    loss.backward()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR, 'momentum': MOM})

    def trainer_step():
        for p in params:           # pretend backward ran again
            p.data()._fresh_grad = True
        trainer.step(BATCH)

    ws = [p.data().asnumpy() for p in params]
    gs = [p.grad().asnumpy() for p in params]
    ms = [np.zeros_like(w) for w in ws]
    scale = np.float32(LR / BATCH)

    def hand():
        for w, g, m in zip(ws, gs, ms):
            m *= MOM
            m -= g * scale
            w += m

    opt_runs = {}
    for name in OPTIMIZERS:
        o = xpnet.optimizer.create(name, rescale_grad=1.0 / BATCH,
                                   **({'momentum': MOM} if name in ('sgd', 'nag') else {}))
        weights = [xpnet.array(w) for w in ws]
        grads = [xpnet.array(g) for g in gs]
        states = [o.create_state(i, w) for i, w in enumerate(weights)]

        def run(o=o, weights=weights, grads=grads, states=states):
            for i in range(len(weights)):
                o.update(i, weights[i], grads[i], states[i])
        opt_runs[name] = run

    rows = []
    for _ in range(args.rounds):
        row = {'hand NumPy SGD-momentum': median_ms(hand, args.reps),
               'Trainer.step (sgd momentum)': median_ms(trainer_step, args.reps)}
        for name, run in opt_runs.items():
            row[f'{name}.update loop'] = median_ms(run, args.reps)
        rows.append(row)
    print(f'Parameter update of an MLP {"-".join(map(str, SIZES))} '
          f'({sum(w.size for w in ws)} floats; {args.rounds} rounds x {args.reps} reps, '
          'medians)')
    floor = float(np.median([r['hand NumPy SGD-momentum'] for r in rows]))
    for key in rows[0]:
        t = float(np.median([r[key] for r in rows]))
        ratios = [r[key] / r['hand NumPy SGD-momentum'] for r in rows]
        print(f'  {key:30s} {t:7.3f} ms   ratio to hand NumPy {t / floor:5.2f}  '
              f'(per round median {np.median(ratios):.2f})')


if __name__ == '__main__':
    main()
