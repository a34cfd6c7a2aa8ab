"""A custom event handler in a few lines: linear learning-rate warm-up.

A ``BatchBegin`` handler raises the learning rate linearly over the first batches; the
script trains a small classifier with it and prints the learning rate of every epoch.

    python examples/custom_handler.py [--epochs 5] [--target-lr 0.2] [--warmup-steps 40]
"""
import argparse

import numpy as np

import xpnet
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import Estimator
from xpnet.handlers import BatchBegin


class WarmUp(BatchBegin):
    """Raises the learning rate linearly to ``target`` over the first ``steps`` batches."""

    def __init__(self, target, steps):
        self.target, self.steps = target, steps

    def batch_begin(self, estimator, *args, **kwargs):
        done = estimator.progress.batches           # batches trained so far, this run
        if done < self.steps:
            estimator.trainer.set_learning_rate(self.target * (done + 1) / self.steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--epochs', type=int, default=5, help='epochs to train (default 5)')
    ap.add_argument('--target-lr', type=float, default=0.2,
                    help='learning rate reached at the end of the warm-up (default 0.2)')
    ap.add_argument('--warmup-steps', type=int, default=40,
                    help='batches of warm-up (default 40)')
    args = ap.parse_args(argv)

    x = np.random.RandomState(0).rand(512, 10).astype(np.float32)
    y = (x.sum(axis=1) > 5).astype(np.float32)
    net = nn.Sequential()
    net.add(nn.Dense(16, activation='relu'), nn.Dense(2))
    net.initialize(init='xavier')
    trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.0, 'momentum': 0.9})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    history = est.fit(DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True),
                      epochs=args.epochs,
                      event_handlers=[WarmUp(target=args.target_lr, steps=args.warmup_steps)])
    print('learning rate per epoch:', history['learning_rate'])
    return history


if __name__ == '__main__':
    main()
