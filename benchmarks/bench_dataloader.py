"""DataLoader benchmark: one epoch over MNIST-sized data (60,000 x 28x28x1 uint8, int32
labels), batch 128, shuffled, measured against the floor in the same run.

Cases:
  floor        hand-written NumPy: permutation + fancy indexing per batch (what any loader
               must at least do);
  fast         DataLoader(ArrayDataset(images, labels), shuffle=True): the vectorized
               gather path for array-backed datasets;
  per_sample   the same through Gluon's per-sample path (sample by sample, then stacked);
  totensor     ``transform_first(ToTensor())`` per sample, num_workers 0 and 2 (threads);
  torch        PyTorch's DataLoader over a TensorDataset (if torch is importable).

Rounds are interleaved; the report gives each case's median epoch time over rounds and its
ratio to the floor's median.

    python benchmarks/bench_dataloader.py [--rounds 5]
"""
import argparse
import statistics
import time

import numpy as np

import xpnet
from xpnet.data import ArrayDataset, DataLoader, default_batchify_fn
from xpnet.data.vision import transforms

try:
    import torch
    from torch.utils.data import DataLoader as TorchLoader, TensorDataset
except ImportError:
    torch = None

N, BATCH = 60_000, 128


def floor_epoch(images, labels):
    perm = np.random.permutation(len(labels))
    for s in range(0, len(perm), BATCH):
        idx = perm[s:s + BATCH]
        xpnet.NDArray(images[idx]), xpnet.NDArray(labels[idx])


def loader_epoch(loader):
    for _ in loader:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, N).astype(np.int32)
    ds = ArrayDataset(images, labels)

    def per_sample(samples):     # an explicit batchify_fn turns the vectorized path off
        return default_batchify_fn(samples)

    tt = ds.transform_first(transforms.ToTensor())
    cases = {
        'floor': lambda: floor_epoch(images, labels),
        'fast': lambda: loader_epoch(DataLoader(ds, batch_size=BATCH, shuffle=True)),
        'per_sample': lambda: loader_epoch(DataLoader(ds, batch_size=BATCH, shuffle=True,
                                                      batchify_fn=per_sample)),
        'totensor_w0': lambda: loader_epoch(DataLoader(tt, batch_size=BATCH, shuffle=True)),
        'totensor_w2': lambda: loader_epoch(DataLoader(tt, batch_size=BATCH, shuffle=True,
                                                       num_workers=2)),
    }
    if torch is not None:
        tds = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
        cases['torch'] = lambda: loader_epoch(TorchLoader(tds, batch_size=BATCH, shuffle=True))
    times = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times['floor'])
    print(f'epoch of {N} samples, batch {BATCH}, {args.rounds} rounds (median seconds, ratio '
          'to floor)')
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f'  {name:12s} {med:8.4f} s   x{med / base:6.2f}')


if __name__ == '__main__':
    main()
