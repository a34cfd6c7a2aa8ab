"""Data-parallel training with a hand-written loop: scikit-learn's 8x8 digits over MPI ranks.

Each rank trains on its shard of every epoch (``SplitSampler``), the Trainer sums the
gradients over the ranks (``kvstore='dist_sync'``) and divides by the global batch, so the
job follows the same trajectory as one process with the global batch size. Validation is
sharded too and its counts are summed with ``dist.allreduce``; only rank 0 prints and saves::

    pip install -e ".[examples,mpi]"
    mpiexec -n 2 python examples/train_digits_dist_loop.py      # about 97% accuracy
    python examples/train_digits_dist_loop.py                   # the same, one process
"""
import argparse
import os

import numpy as np

import xpnet
import xpnet.distributed as dist
from xpnet import autograd
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader, SplitSampler


def load_digits_split(seed=0):
    """(x_train, y_train, x_val, y_val): pixels in [0, 1], a stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y.astype(np.float32), test_size=0.2, stratify=y, random_state=seed)
    return x_train, y_train, x_val, y_val


def build_net():
    net = nn.Sequential()
    net.add(nn.Dense(256, activation='relu', in_units=64), nn.Dropout(0.2),
            nn.Dense(128, activation='relu', in_units=256), nn.Dropout(0.2),
            nn.Dense(10, in_units=128))
    return net


def evaluate(net, x_val, y_val, batch_size):
    """Accuracy over the whole validation set: each rank scores its shard, the counts are
    summed over the ranks (the shard's padded repeat, if any, is left out)."""
    sampler = SplitSampler(len(x_val))
    indices = list(sampler)[:len(sampler) - sampler.padding]
    correct = 0
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        pred = net(xpnet.array(x_val[rows])).argmax(axis=1).asnumpy()
        correct += int((pred == y_val[rows]).sum())
    counts = dist.allreduce(np.array([correct, len(indices)], np.float64))
    return counts[0] / counts[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--batch-size', type=int, default=64, help='global batch size')
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=os.path.join('runs', 'digits_dist'))
    args = parser.parse_args(argv)

    dist.init()
    rank, size = dist.rank(), dist.size()
    if args.batch_size % size:
        parser.error(f'--batch-size {args.batch_size} is not a multiple of {size} ranks')
    x_train, y_train, x_val, y_val = load_digits_split(args.seed)

    xpnet.random.seed(args.seed)
    net = build_net()
    net.initialize(init=xpnet.init.Xavier())
    # rank 0's weights are broadcast here; Adam's states start identical (zeros)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': args.lr},
                            kvstore='dist_sync')
    xpnet.random.seed(args.seed * 1000 + rank)          # each rank its own dropout masks
    sampler = SplitSampler(len(x_train), shuffle=True, seed=args.seed)
    loader = DataLoader(ArrayDataset(x_train, y_train), batch_size=args.batch_size // size,
                        sampler=sampler)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()

    for epoch in range(args.epochs):
        total = np.zeros(2)
        for data, label in loader:
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(data.shape[0])     # this rank's batch; divided by the global one
            total += (loss.sum().asscalar(), data.shape[0])
        dist.allreduce(total)
        accuracy = evaluate(net, x_val, y_val, 256)
        if rank == 0:
            print(f'epoch {epoch + 1:3d}  loss {total[0] / total[1]:.4f}  '
                  f'validation accuracy {accuracy:.4f}', flush=True)
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        net.save_parameters(os.path.join(args.out, 'digits.params.npz'))
    return accuracy


if __name__ == '__main__':
    main()
