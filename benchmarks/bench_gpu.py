"""GPU training steps: xpnet on gpu(0) against the same models in PyTorch on CUDA.

Models (the same shapes in both frameworks, initialisation aside):

  mlp   Dense 784-512-512-10 (ReLU), batch 256, SGD momentum 0.9, softmax cross-entropy;
  cnn   CIFAR-style: [Conv3x3 + BatchNorm + ReLU] x2 (32 ch), MaxPool2,
        [Conv3x3 + BatchNorm + ReLU] x2 (64 ch), MaxPool2, GlobalAvgPool, Dense 10;
        batch 128 of 3x32x32, SGD momentum 0.9;
  lstm  word LM: Embedding 10000x200, Dropout 0.2, LSTM 200 (one layer) over 35 steps,
        Dropout 0.2, Dense 10000; batch 20, plain SGD.

A step is forward + loss + backward + optimizer update. After a warm-up (the first xpnet
step on a fresh machine compiles CuPy's and xpnet's kernels: reported as "1st step s"),
rounds of steps alternate between the frameworks, each ending with a device
synchronisation. Per model:

  xpnet ms   median wall time per step
  host ms    the Python side of a step (until the last step of a round returned, before
             the synchronisation): close to "xpnet ms" means launch/Python bound
  torch ms   median wall time per step of the PyTorch model; ratio = xpnet / torch
  kernels    kernels per step: "sim" counted on the simulated device (what xpnet asks
             for: exact, no GPU needed), "cuda" and "torch" seen by PyTorch's profiler
             (``--kernels``; CUPTI sees CuPy's launches too, cuBLAS internals included)
  syncs      host synchronisations per step on the simulated device (0 is the goal)

Both frameworks compute float32 products in full float32 by default (PyTorch's cuDNN
would use TF32 for convolutions, CuPy's cuBLAS does not); ``--tf32`` lets both use TF32.

Modes:

  python benchmarks/bench_gpu.py [--kernels] [--budget 120] [--json out.json]
  python benchmarks/bench_gpu.py --sim     # dry run: kernels/syncs per step on the
                                           # simulated device (small batches: counts do
                                           # not depend on sizes), no GPU needed
  python benchmarks/bench_gpu.py --cpu     # dry run: xpnet cpu(0) against torch cpu

Host overhead per op (Python + a CuPy launch) is ~5-10 us, so a step's host time is about
its kernel count times that: fewer kernels and fewer Python-level ops per step are what
make the ratio. Measurements go to docs/performance.md.
"""
import argparse
import json
import os
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODELS = ('mlp', 'cnn', 'lstm')
V, E, H, T, NB = 10000, 200, 200, 35, 20          # LM: vocab, embedding, hidden, steps, batch
MLP_BATCH, CNN_BATCH = 256, 128


def log(*args):
    print(*args, flush=True)


# ---- xpnet ---------------------------------------------------------------------------------------

def build_xpnet(model, ctx, seed=0, small=False):
    """A step function of ``model`` on ``ctx`` (returns the per-sample loss NDArray);
    ``small`` shrinks batches (and the LM's vocabulary) for the simulated device, whose
    kernel counts do not depend on sizes."""
    import xpnet
    from xpnet import autograd, nd
    from xpnet import layers as nn
    xpnet.random.seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    if model == 'lstm':
        vocab, batch = (200, 4) if small else (V, NB)
        net = _lm(nn, vocab)
        net.initialize(xpnet.init.Uniform(0.1), ctx=ctx)
        trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
        x = nd.array(rng.integers(0, vocab, (T, batch)), ctx=ctx, dtype='int64')
        y = nd.array(rng.integers(0, vocab, (T * batch,)), ctx=ctx, dtype='int64')
        state = {'s': net.rnn.begin_state(batch, ctx=ctx)}

        def step():
            with autograd.record():
                logits, new = net(x, state['s'])
                loss = loss_fn(logits.reshape((-1, vocab)), y)
            loss.backward()
            trainer.step(T * batch)
            state['s'] = [s.detach() for s in new]
            return loss
        return step
    net = nn.HybridSequential()
    if model == 'mlp':
        net.add(nn.Dense(512, activation='relu', in_units=784),
                nn.Dense(512, activation='relu', in_units=512), nn.Dense(10, in_units=512))
        batch, shape = (8 if small else MLP_BATCH), (784,)
    elif model == 'cnn':
        def block(c_in, c_out):
            return [nn.Conv2D(c_out, 3, padding=1, in_channels=c_in),
                    nn.BatchNorm(in_channels=c_out), nn.Activation('relu')]
        net.add(*block(3, 32), *block(32, 32), nn.MaxPool2D(2), *block(32, 64),
                *block(64, 64), nn.MaxPool2D(2), nn.GlobalAvgPool2D(), nn.Dense(10, in_units=64))
        batch, shape = (2 if small else CNN_BATCH), ((3, 8, 8) if small else (3, 32, 32))
    else:
        raise ValueError(f'unknown model {model!r}; expected one of {MODELS}')
    net.initialize(xpnet.init.Xavier(), ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.05,
                                                           'momentum': 0.9})
    x = nd.array(rng.standard_normal((batch,) + shape).astype(np.float32), ctx=ctx)
    y = nd.array(rng.integers(0, 10, batch).astype(np.float32), ctx=ctx)

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch)
        return loss
    return step


def _lm(nn, vocab):
    from xpnet.layers import rnn

    class LM(nn.Block):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, E)
            self.drop1 = nn.Dropout(0.2)
            self.rnn = rnn.LSTM(H, input_size=E)
            self.drop2 = nn.Dropout(0.2)
            self.decoder = nn.Dense(vocab, flatten=False, in_units=H)

        def forward(self, x, states):
            out, states = self.rnn(self.drop1(self.embedding(x)), states)
            return self.decoder(self.drop2(out)), states
    return LM()


def sim_counts(model):
    """Kernels, syncs and host-to-device copies of one warm step on the simulated
    device (small sizes)."""
    from xpnet.backend import sim, simulated
    step = build_xpnet(model, sim(0), small=True)
    step()
    with simulated.counting() as c:
        step()
    return {'kernels': c.kernels, 'syncs': c.syncs, 'htod': c.htod}


def xpnet_sync(ctx):
    if ctx.device_type == 'gpu':
        return ctx.xp.cuda.Device(ctx.device_id).synchronize
    return lambda: None


# ---- PyTorch -------------------------------------------------------------------------------------

def build_torch(model, device, seed=0):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if model == 'lstm':
        class LM(tnn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = tnn.Embedding(V, E)
                self.drop = tnn.Dropout(0.2)
                self.rnn = tnn.LSTM(E, H)
                self.decoder = tnn.Linear(H, V)

            def forward(self, x, states):
                out, states = self.rnn(self.drop(self.embedding(x)), states)
                return self.decoder(self.drop(out)), states
        net = LM().to(device).train()
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        x = torch.tensor(rng.integers(0, V, (T, NB)), device=device)
        y = torch.tensor(rng.integers(0, V, (T * NB,)), device=device)
        zeros = torch.zeros(1, NB, H, device=device)
        state = {'s': (zeros.clone(), zeros.clone())}

        def step():
            opt.zero_grad(set_to_none=True)
            logits, new = net(x, state['s'])
            loss = TF.cross_entropy(logits.reshape(-1, V), y)
            loss.backward()
            opt.step()
            state['s'] = tuple(s.detach() for s in new)
            return loss
        return step
    if model == 'mlp':
        net = tnn.Sequential(tnn.Linear(784, 512), tnn.ReLU(), tnn.Linear(512, 512), tnn.ReLU(),
                             tnn.Linear(512, 10))
        batch, shape = MLP_BATCH, (784,)
    else:
        def block(c_in, c_out):
            return [tnn.Conv2d(c_in, c_out, 3, padding=1), tnn.BatchNorm2d(c_out), tnn.ReLU()]
        net = tnn.Sequential(*block(3, 32), *block(32, 32), tnn.MaxPool2d(2),
                             *block(32, 64), *block(64, 64), tnn.MaxPool2d(2),
                             tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))
        batch, shape = CNN_BATCH, (3, 32, 32)
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.tensor(rng.standard_normal((batch,) + shape).astype(np.float32), device=device)
    y = torch.tensor(rng.integers(0, 10, batch), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = TF.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def torch_sync(device):
    import torch
    return torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)


# ---- measuring -----------------------------------------------------------------------------------

def run_round(step, sync, n):
    """(wall seconds per step, host seconds per step) of ``n`` steps, synchronised once."""
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    t1 = time.perf_counter()
    sync()
    return (time.perf_counter() - t0) / n, (t1 - t0) / n


def profile_kernels(step, sync):
    """CUDA kernels, memcpys and memsets of one step, seen by PyTorch's profiler."""
    from torch.profiler import ProfilerActivity, profile
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        sync()
    kernels, memset, gpu_us, names = 0, 0, 0.0, {}
    memcpy = {'HtoD': 0, 'DtoH': 0, 'DtoD': 0, 'other': 0}
    for e in prof.events():
        if 'CUDA' not in str(getattr(e, 'device_type', '')):
            continue
        name = e.name or ''
        low = name.lower()
        if 'memcpy' in low:
            memcpy[next((k for k in ('HtoD', 'DtoH', 'DtoD') if k.lower() in low),
                        'other')] += 1
        elif 'memset' in low:
            memset += 1
        else:
            kernels += 1
            names[name] = names.get(name, 0) + 1
            try:
                gpu_us += float(e.time_range.elapsed_us())
            except Exception:
                pass
    top = sorted(names.items(), key=lambda kv: -kv[1])[:8]
    return {'kernels': kernels, 'memcpy': memcpy, 'memset': memset,
            'kernel_time_ms': round(gpu_us / 1e3, 3), 'top': [(n[:60], c) for n, c in top]}


def bench_model(model, args, ctx, tdev, budget):
    res = {'model': model}
    deadline = time.perf_counter() + budget
    if not args.no_sim_counts:
        res['sim'] = sim_counts(model)
    step = build_xpnet(model, ctx)
    sync = xpnet_sync(ctx)
    t0 = time.perf_counter()
    step()
    sync()
    res['xpnet_first_step_s'] = round(time.perf_counter() - t0, 2)
    for _ in range(args.warmup - 1):
        step()
    single = run_round(step, sync, 1)[0]
    n = int(min(args.max_steps, max(args.min_steps, args.round_time / max(single, 1e-6))))
    res['steps_per_round'] = n
    tstep = tsync = None
    if tdev is not None:
        try:
            tstep, tsync = build_torch(model, tdev), torch_sync(tdev)
            for _ in range(args.warmup):
                tstep()
            tsync()
        except Exception as err:            # report, keep xpnet's numbers
            res['torch_error'] = f'{type(err).__name__}: {err}'
            tstep = None
    xw, xh, tw = [], [], []
    rounds = 0
    while rounds < args.rounds and (rounds < 2 or time.perf_counter() < deadline):
        for who in ((0, 1) if rounds % 2 == 0 else (1, 0)):
            if who == 0:
                w, h = run_round(step, sync, n)
                xw.append(w)
                xh.append(h)
            elif tstep is not None:
                tw.append(run_round(tstep, tsync, n)[0])
        rounds += 1
    res['rounds'] = rounds
    res['xpnet_ms'] = round(1e3 * statistics.median(xw), 3)
    res['xpnet_host_ms'] = round(1e3 * statistics.median(xh), 3)
    if tw:
        res['torch_ms'] = round(1e3 * statistics.median(tw), 3)
        res['ratio'] = round(res['xpnet_ms'] / res['torch_ms'], 2)
    if args.kernels and ctx.device_type == 'gpu':
        try:
            res['xpnet_kernels'] = profile_kernels(step, sync)
            if tstep is not None:
                res['torch_kernels'] = profile_kernels(tstep, tsync)
        except Exception as err:
            res['kernels_error'] = f'{type(err).__name__}: {err}'
    return res


# ---- the command line ----------------------------------------------------------------------------

def _context(mode, device_id):
    import xpnet
    if mode == 'cpu':
        return xpnet.cpu(0)
    if mode == 'sim':
        from xpnet.backend import sim
        return sim(0)
    return xpnet.gpu(device_id)


def _torch_device(mode, device_id, wanted, tf32=False):
    if not wanted or mode == 'sim':
        return None
    try:
        import torch
    except ImportError:
        log('bench_gpu: torch is not installed; xpnet numbers only')
        return None
    if mode == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        log('bench_gpu: torch has no CUDA device; xpnet numbers only')
        return None
    torch.backends.cudnn.benchmark = True
    # The same arithmetic in both frameworks: PyTorch lets cuDNN convolutions use TF32 by
    # default, CuPy's cuBLAS does not (unless CUPY_TF32=1, which --tf32 sets).
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    log(f'torch {torch.__version__} on cuda:{device_id}; TF32 {"on" if tf32 else "off"}')
    return torch.device(f'cuda:{device_id}')


def _summary(results, mode):
    log('')
    if mode == 'sim':
        log(f'{"model":6} {"kernels":>8} {"syncs":>6} {"htod":>5}   (per warm step, simulated)')
        for r in results:
            s = r.get('sim') or {}
            log(f'{r["model"]:6} {s.get("kernels", "-"):>8} {s.get("syncs", "-"):>6} '
                f'{s.get("htod", "-"):>5}' + (f'  FAILED: {r["error"]}' if 'error' in r else ''))
        return
    log(f'{"model":6} {"xpnet ms":>9} {"host ms":>8} {"torch ms":>9} {"ratio":>6} '
        f'{"1st s":>6} {"kernels sim/cuda/torch":>23} {"syncs":>5}')
    for r in results:
        if 'error' in r:
            log(f'{r["model"]:6} FAILED: {r["error"]}')
            continue

        def f(key, width, fmt='{:.2f}'):
            v = r.get(key)
            return f'{fmt.format(v) if v is not None else "-":>{width}}'
        ks = (r.get('sim') or {}).get('kernels', '-')
        kx = (r.get('xpnet_kernels') or {}).get('kernels', '-')
        kt = (r.get('torch_kernels') or {}).get('kernels', '-')
        log(f'{r["model"]:6} {f("xpnet_ms", 9)} {f("xpnet_host_ms", 8)} {f("torch_ms", 9)} '
            f'{f("ratio", 6)} {f("xpnet_first_step_s", 6)} {f"{ks}/{kx}/{kt}":>23} '
            f'{(r.get("sim") or {}).get("syncs", "-"):>5}')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', default=','.join(MODELS), help='comma-separated: mlp,cnn,lstm')
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument('--cpu', action='store_true', help='xpnet cpu(0), torch cpu (dry run)')
    mode.add_argument('--sim', action='store_true',
                      help='count kernels/syncs per step on the simulated device only')
    ap.add_argument('--device-id', type=int, default=0)
    ap.add_argument('--budget', type=float, default=120.0, help='seconds for all models')
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--round-time', type=float, default=0.25, help='target seconds per round')
    ap.add_argument('--min-steps', type=int, default=2)
    ap.add_argument('--max-steps', type=int, default=50)
    ap.add_argument('--no-torch', action='store_true')
    ap.add_argument('--no-sim-counts', action='store_true')
    ap.add_argument('--kernels', action='store_true',
                    help='count CUDA kernels per step with the PyTorch profiler (GPU only)')
    ap.add_argument('--tf32', action='store_true',
                    help='let both frameworks use TF32 for float32 products (CUPY_TF32=1 '
                         'and PyTorch\'s allow_tf32); default: both in full float32')
    ap.add_argument('--json', help='write the results here')
    args = ap.parse_args(argv)
    if args.tf32:
        os.environ['CUPY_TF32'] = '1'          # read when CuPy is imported
    models = [m.strip() for m in args.models.split(',') if m.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f'unknown model {m!r}; expected some of {",".join(MODELS)}')
    mode_name = 'cpu' if args.cpu else 'sim' if args.sim else 'gpu'
    import xpnet
    log(f'xpnet from {os.path.dirname(xpnet.__file__)}; numpy {np.__version__}; '
        f'mode {mode_name}')
    if mode_name == 'gpu':
        if xpnet.num_gpus() < 1:
            log('bench_gpu: no GPU visible to CuPy; use --sim or --cpu for a dry run')
            return 2
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(args.device_id)
        name = props['name'].decode() if isinstance(props['name'], bytes) else props['name']
        log(f'cupy {cupy.__version__}; device {args.device_id}: {name}')
    results = []
    t_all = time.perf_counter()
    for i, model in enumerate(models):
        budget = max(5.0, (args.budget - (time.perf_counter() - t_all)) / (len(models) - i))
        log(f'--- {model} (budget {budget:.0f} s)')
        try:
            if mode_name == 'sim':
                res = {'model': model, 'sim': sim_counts(model)}
            else:
                ctx = _context(mode_name, args.device_id)
                tdev = _torch_device(mode_name, args.device_id, not args.no_torch, args.tf32)
                res = bench_model(model, args, ctx, tdev, budget)
        except Exception as err:
            res = {'model': model, 'error': f'{type(err).__name__}: {err}'}
            traceback.print_exc()
        log('    ' + json.dumps(res))
        results.append(res)
    _summary(results, mode_name)
    log(f'total {time.perf_counter() - t_all:.1f} s')
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump({'mode': mode_name, 'results': results}, fh, indent=1)
    return 1 if any('error' in r for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
