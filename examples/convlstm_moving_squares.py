"""A ConvLSTM that learns to predict the next frame of synthetic moving squares, trained with
the Estimator (about a minute on a CPU with the defaults).

Each sequence shows one square moving at a constant velocity and bouncing off the borders.
The network reads frames 0..T-1 and predicts frames 1..T: a ``Conv2DLSTMCell`` unrolled over
time, then a 1x1 convolution to one logit per pixel, trained with sigmoid cross-entropy.
After training, the validation mean squared error of the predicted frames is compared with
copying the last frame (which ignores motion): a network that learned the motion beats it.

    python examples/convlstm_moving_squares.py [--epochs 8] [--size 16] [--frames 8]
"""
import argparse
import time

import numpy as np

import xpnet
from xpnet import autograd, metric
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import Estimator, LoggingHandler
from xpnet.layers import rnn


def moving_squares(n, frames, size=16, square=4, seed=0):
    """``(n, frames + 1, 1, size, size)`` float32 videos of one square each, moving by one or
    two pixels per frame along each axis and bouncing off the borders."""
    rng = np.random.default_rng(seed)
    hi = size - square
    pos = rng.integers(0, hi + 1, size=(n, 2))
    vel = rng.choice([-2, -1, 1, 2], size=(n, 2))
    video = np.zeros((n, frames + 1, 1, size, size), dtype=np.float32)
    rows = np.arange(n)
    span = np.arange(square)
    for t in range(frames + 1):
        ys = (pos[:, :1] + span)[:, :, None]          # (n, square, 1)
        xs = (pos[:, 1:] + span)[:, None, :]          # (n, 1, square)
        video[rows[:, None, None], t, 0, ys, xs] = 1.0
        nxt = pos + vel
        bounce = (nxt < 0) | (nxt > hi)
        vel = np.where(bounce, -vel, vel)
        pos = np.clip(pos + vel, 0, hi)
    return video


class NextFramePredictor(nn.Block):
    """Conv2DLSTMCell over the frames, then a 1x1 convolution to per-pixel logits."""

    def __init__(self, size, hidden=16):
        super().__init__()
        self.cell = rnn.Conv2DLSTMCell((1, size, size), hidden, i2h_kernel=3, h2h_kernel=3,
                                       i2h_pad=1)
        self.head = nn.Conv2D(1, kernel_size=1, in_channels=hidden)

    def forward(self, x):                                    # x: (N, T, 1, S, S)
        N, T = x.shape[:2]
        out, _ = self.cell.unroll(T, x, layout='NTC', merge_outputs=True)
        logits = self.head(out.reshape((N * T,) + out.shape[2:]))
        return logits.reshape(x.shape)


def frame_mse(net, data, label):
    """Mean squared error of the predicted next frames, and of copying the last frame."""
    with autograd.predict_mode():
        pred = xpnet.nd.sigmoid(net(data)).asnumpy()
    target = label.asnumpy()
    return float(((pred - target) ** 2).mean()), float(((data.asnumpy() - target) ** 2).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--train', type=int, default=384, help='training sequences (default 384)')
    ap.add_argument('--val', type=int, default=64, help='validation sequences (default 64)')
    ap.add_argument('--frames', type=int, default=8, help='frames per sequence (default 8)')
    ap.add_argument('--size', type=int, default=16, help='frame height and width (default 16)')
    ap.add_argument('--hidden', type=int, default=16,
                    help='ConvLSTM hidden channels (default 16)')
    ap.add_argument('--batch-size', type=int, default=16, help='sequences per batch (default 16)')
    ap.add_argument('--epochs', type=int, default=8, help='epochs to train (default 8)')
    ap.add_argument('--lr', type=float, default=0.01, help='Adam learning rate (default 0.01)')
    ap.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    ap.add_argument('--gpu', action='store_true', help='train on gpu(0)')
    args = ap.parse_args(argv)

    xpnet.random.seed(args.seed)
    ctx = xpnet.gpu(0) if args.gpu else xpnet.cpu()
    videos = moving_squares(args.train + args.val, args.frames, args.size, seed=args.seed)
    data, label = videos[:, :-1], videos[:, 1:]
    tr, va = slice(0, args.train), slice(args.train, None)
    train_loader = DataLoader(ArrayDataset(data[tr], label[tr]), batch_size=args.batch_size,
                              shuffle=True, last_batch='discard')
    val_loader = DataLoader(ArrayDataset(data[va], label[va]), batch_size=args.batch_size)

    net = NextFramePredictor(args.size, args.hidden)
    net.initialize(xpnet.init.Xavier(), ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': args.lr})
    est = Estimator(net, xpnet.loss.SigmoidBinaryCrossEntropyLoss(),
                    train_metrics=[metric.Loss('bce')], val_metrics=[metric.Loss('bce')],
                    trainer=trainer, context=ctx)
    val_x = xpnet.array(data[va], ctx=ctx)
    val_y = xpnet.array(label[va], ctx=ctx)
    before, copy_last = frame_mse(net, val_x, val_y)
    start = time.time()
    est.fit(train_loader, val_data=val_loader, epochs=args.epochs,
            event_handlers=[LoggingHandler(log_interval='epoch',
                                           metrics=est.train_metrics + est.val_metrics)])
    after, _ = frame_mse(net, val_x, val_y)
    print(f'trained in {time.time() - start:.1f}s. Validation next-frame MSE: {after:.4f} '
          f'(untrained {before:.4f}; copying the last frame {copy_last:.4f})')
    return after, copy_last, before


if __name__ == '__main__':
    main()
