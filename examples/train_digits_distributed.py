"""Train the digit classifier with the Estimator across MPI ranks (data parallel).

The same run as one process, split over N ranks: each rank trains on its shard of every
global batch (``SplitSampler``), the Trainer sums the gradients over the ranks
(``kvstore='dist_sync'``), and the Estimator makes the rest behave as one run: metrics are
those of all ranks' data, every rank stops at the same epoch, and only rank 0 logs and
writes the checkpoints (the best one too), the CSV log and the TensorBoard files. Resuming
(``--resume``) continues every rank from rank 0's newest checkpoint::

    pip install -e ".[examples,mpi]"
    mpiexec -n 2 python examples/train_digits_distributed.py
    python examples/train_digits_distributed.py          # the same run, one process
    mpiexec -n 2 python examples/train_digits_distributed.py --resume

Both reach about 97% validation accuracy. Outputs go under ``--out``
(default ``runs/digits_distributed``).
"""
import argparse
import os
import time

import xpnet
import xpnet.distributed as dist
from xpnet.data import ArrayDataset, DataLoader, SplitSampler
from xpnet.estimator import Estimator
from xpnet.handlers import (CheckpointHandler, CSVLoggerHandler, EarlyStoppingHandler,
                            LoggingHandler, TensorBoardHandler)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.join('runs', 'digits_distributed'),
                        help='directory for checkpoints and logs (written by rank 0)')
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--batch-size', type=int, default=64,
                        help='global batch size, split over the ranks')
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--patience', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--resume', action='store_true',
                        help='continue from the newest valid checkpoint in --out')
    parser.add_argument('--no-progress-bar', action='store_true')
    args = parser.parse_args(argv)
    # the data and the network of the hand-written loop beside this file, for comparison
    from train_digits_dist_loop import build_net, load_digits_split

    dist.init()
    ranks = dist.size()
    if args.batch_size % ranks:
        parser.error(f'--batch-size {args.batch_size} is not a multiple of {ranks} ranks')
    x_train, y_train, x_val, y_val = load_digits_split(args.seed)

    xpnet.random.seed(args.seed)            # the same weights on every rank (in_units given)
    net = build_net()
    net.initialize(init=xpnet.init.Xavier(), ctx=dist.default_context())   # GPU local_rank
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': args.lr},
                            kvstore='dist_sync')
    xpnet.random.seed(args.seed * 1000 + dist.rank())     # each rank its own dropout masks
    # this rank's shards: a new shuffle each epoch that every rank agrees on; validation
    # split too (the Estimator leaves out the sampler's padded repeat)
    train_data = DataLoader(ArrayDataset(x_train, y_train), batch_size=args.batch_size // ranks,
                            sampler=SplitSampler(len(x_train), shuffle=True, seed=args.seed))
    val_data = DataLoader(ArrayDataset(x_val, y_val), batch_size=256,
                          sampler=SplitSampler(len(x_val)))

    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(),
                    train_metrics=xpnet.metric.Accuracy(), trainer=trainer)
    val_acc = est.val_metrics[0]            # 'validation accuracy', over every rank's shard
    handlers = [
        CheckpointHandler(os.path.join(args.out, 'checkpoints'), model_prefix='digits',
                          monitor=val_acc, save_best=True, max_checkpoints=2,
                          resume_from_checkpoint=args.resume),
        EarlyStoppingHandler(monitor=val_acc, patience=args.patience, restore_best=True),
        CSVLoggerHandler(os.path.join(args.out, 'log.csv')),
        TensorBoardHandler(os.path.join(args.out, 'tensorboard')),
        LoggingHandler(progress_bar=False if args.no_progress_bar else None),
    ]
    start = time.time()
    history = est.fit(train_data, val_data=val_data, epochs=args.epochs,
                      event_handlers=handlers)
    final = est.evaluate(val_data)['validation accuracy']      # the restored best weights
    if est.is_writer:
        print(f'validation accuracy {final:.4f} after {len(history)} epochs on {ranks} '
              f'rank(s), {time.time() - start:.1f}s; outputs in {args.out}', flush=True)
    return final


if __name__ == '__main__':
    main()
