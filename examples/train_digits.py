"""Train a digit classifier on scikit-learn's 8x8 handwritten digits with the Estimator.

The 1,797 images ship with scikit-learn (no download). The run validates every epoch,
keeps crash-safe checkpoints (and the best one; Ctrl+C saves one too), halves the learning
rate when validation stops improving and stops early when it keeps not improving
(restoring the best weights), shows a progress bar on a terminal, and writes TensorBoard
logs, a CSV log and a plot of the curves. Everything goes under ``--out`` (default
``runs/digits``)::

    pip install -e ".[examples,plot]"
    python examples/train_digits.py              # about 97-98% validation accuracy
    python examples/train_digits.py --resume     # continue an interrupted run
    tensorboard --logdir runs/digits/tensorboard
"""
import argparse
import os
import time

import numpy as np

import xpnet
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import Estimator
from xpnet.handlers import (CheckpointHandler, CSVLoggerHandler, EarlyStoppingHandler,
                            LoggingHandler, ReduceLROnPlateauHandler, TensorBoardHandler)


def load_digits_split(val_fraction=0.2, seed=0):
    """(x_train, y_train, x_val, y_val): pixels scaled to [0, 1], a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y.astype(np.float32), test_size=val_fraction, stratify=y, random_state=seed)
    return x_train, y_train, x_val, y_val


def build_net():
    net = nn.Sequential()
    net.add(nn.Dense(256, activation='relu'),
            nn.Dropout(0.2),
            nn.Dense(128, activation='relu'),
            nn.Dropout(0.2),
            nn.Dense(10))
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.join('runs', 'digits'),
                        help='directory for checkpoints and TensorBoard logs')
    parser.add_argument('--epochs', type=int, default=60)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--patience', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--resume', action='store_true',
                        help='continue from the newest valid checkpoint in --out')
    parser.add_argument('--no-progress-bar', action='store_true',
                        help='plain log lines even on a terminal')
    args = parser.parse_args(argv)

    xpnet.random.seed(args.seed)
    x_train, y_train, x_val, y_val = load_digits_split(seed=args.seed)
    train_data = DataLoader(ArrayDataset(x_train, y_train), batch_size=args.batch_size,
                            shuffle=True)
    val_data = DataLoader(ArrayDataset(x_val, y_val), batch_size=256)

    net = build_net()
    net.initialize(init=xpnet.init.Xavier())
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': args.lr})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(),
                    train_metrics=xpnet.metric.Accuracy(), trainer=trainer)
    val_acc = est.val_metrics[0]          # 'validation accuracy'

    handlers = [
        CheckpointHandler(os.path.join(args.out, 'checkpoints'), model_prefix='digits',
                          monitor=val_acc, save_best=True, max_checkpoints=3,
                          resume_from_checkpoint=args.resume),
        ReduceLROnPlateauHandler(val_acc, factor=0.5, patience=max(args.patience // 2, 1)),
        EarlyStoppingHandler(monitor=val_acc, patience=args.patience, restore_best=True),
        TensorBoardHandler(os.path.join(args.out, 'tensorboard')),
        CSVLoggerHandler(os.path.join(args.out, 'log.csv')),
        LoggingHandler(progress_bar=False if args.no_progress_bar else None),
    ]
    start = time.time()
    history = est.fit(train_data, val_data=val_data, epochs=args.epochs,
                      event_handlers=handlers)
    try:
        history.plot(os.path.join(args.out, 'history.png'))
    except ImportError as err:          # matplotlib is optional: pip install 'xpnet[plot]'
        print(f'no plot: {err}')
    final = est.evaluate(val_data)['validation accuracy']     # the restored best weights
    accuracies = history['validation accuracy']
    best = max(range(len(accuracies)), key=lambda i: -1 if accuracies[i] != accuracies[i]
               else accuracies[i])
    print(f'validation accuracy {final:.4f}; best epoch {history.epoch[best]} '
          f'(validation accuracy {accuracies[best]:.4f}) of {len(history)} epochs, '
          f'{time.time() - start:.1f}s; outputs in {args.out}')
    return final


if __name__ == '__main__':
    main()
