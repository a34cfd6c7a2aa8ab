"""Crash-safe training: interrupt a run, start it again, and it continues exactly.

The run below is interrupted in the middle of epoch 3 (a handler raises KeyboardInterrupt
as the next batch starts, as Ctrl+C would). The CheckpointHandler, which otherwise saves at
epoch ends, then saves the last completed batch before the error propagates. Starting the
same training again with ``resume_from_checkpoint=True`` picks up that checkpoint and
trains exactly the remaining batches, with the same data order, dropout masks and
optimizer state, ending with bit-identical weights to a run that was never interrupted.
(A process killed outright, e.g. by a power cut, cannot save: it resumes from the newest
periodic checkpoint; add ``batch_period`` to take them more often.) In your own scripts,
keep ``resume_from_checkpoint=True`` and rerun the script after a crash.

    python examples/resume_training.py [--out runs/resume]
"""
import argparse
import os
import shutil

import numpy as np

import xpnet
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import Estimator
from xpnet.handlers import BatchBegin, CheckpointHandler

EPOCHS = 5


class SimulatedCtrlC(BatchBegin):
    def __init__(self, after_batches):
        self.after_batches = after_batches

    def batch_begin(self, estimator, *args, **kwargs):
        if estimator.progress.batches == self.after_batches:
            raise KeyboardInterrupt(f'simulated Ctrl+C after {self.after_batches} batches')


def train(model_dir=None, crash_after=None):
    """One training run; returns the final weights. Every run builds everything afresh,
    as a restarted script would."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    xpnet.random.seed(0)
    loader = DataLoader(ArrayDataset((x / 16.0).astype(np.float32), y.astype(np.float32)),
                        batch_size=32, shuffle=True)
    net = nn.Sequential()
    net.add(nn.Dense(128, activation='relu'), nn.Dropout(0.3), nn.Dense(10))
    net.initialize(init='xavier')
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    handlers = []
    if model_dir is not None:
        handlers.append(CheckpointHandler(model_dir, epoch_period=1,
                                          resume_from_checkpoint=True))
    if crash_after is not None:
        handlers.append(SimulatedCtrlC(crash_after))
    est.fit(loader, epochs=EPOCHS, event_handlers=handlers)
    return {k: p.data().asnumpy() for k, p in net.collect_params().items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=os.path.join('runs', 'resume'),
                        help='directory for the checkpoints (default runs/resume; its '
                             'checkpoints/ folder is emptied first)')
    args = parser.parse_args(argv)
    model_dir = os.path.join(args.out, 'checkpoints')
    shutil.rmtree(model_dir, ignore_errors=True)

    print('=== run 1: interrupted during its third epoch ===')
    try:
        train(model_dir, crash_after=150)          # 57 batches per epoch
    except KeyboardInterrupt as err:
        print(f'*** {err} ***')
    print('=== run 2: the same script started again ===')
    resumed = train(model_dir)
    print('=== reference: one uninterrupted run ===')
    reference = train()
    same = all(np.array_equal(resumed[k], reference[k]) for k in reference)
    print(f'resumed weights equal the uninterrupted run bit for bit: {same}')
    return same


if __name__ == '__main__':
    main()
