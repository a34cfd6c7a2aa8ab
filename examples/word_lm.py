"""Word-level LSTM (or LSTMP) language model trained with the Estimator, reporting perplexity.

Any plain-text corpus works: each line is split on whitespace and ends with '<eos>'. The
corpus is cut into ``batch_size`` contiguous streams (Gluon's ``IntervalSampler`` trick), so
batch ``k`` continues batch ``k-1`` row by row and the hidden state is carried across batches
(truncated back-propagation through time, ``--bptt`` steps).

    python examples/word_lm.py --train corpus.txt [--val valid.txt] [--epochs 5]
    python examples/word_lm.py --train wiki.train.tokens --val wiki.valid.tokens \\
        --emsize 650 --nhid 650 --nlayers 2 --dropout 0.5 --epochs 40        # WikiText-2
    python examples/word_lm.py --train corpus.txt --projection 64            # an LSTMP

Without ``--val`` the last 10% of the training text is held out. The script prints the
training and validation perplexity of every epoch and returns them from ``main``.
"""
import argparse
import math
import time

import xpnet
from xpnet import autograd, metric
from xpnet import layers as nn
from xpnet.data import DataLoader, IntervalSampler
from xpnet.data.text import LanguageModelDataset
from xpnet.estimator import BatchEnd, EpochBegin, Estimator, LoggingHandler
from xpnet.layers import rnn


class RNNModel(nn.Block):
    """Embedding -> dropout -> LSTM (optionally projected) -> dropout -> Dense decoder.

    The recurrent state is kept between calls (detached: truncated BPTT) separately for
    training and evaluation; ``reset_states()`` starts over.
    """

    def __init__(self, vocab_size, emsize, nhid, nlayers, dropout, projection=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emsize, sparse_grad=True,
                                      weight_initializer=xpnet.init.Uniform(0.1))
        self.drop = nn.Dropout(dropout)
        self.rnn = rnn.LSTM(nhid, num_layers=nlayers, layout='NTC', dropout=dropout,
                            input_size=emsize, projection_size=projection or None)
        self.decoder = nn.Dense(vocab_size, flatten=False, in_units=projection or nhid)
        self._states = {}

    def reset_states(self):
        self._states = {}

    def forward(self, x):                                     # x: (N, T) token ids
        mode = autograd.is_training()
        states = self._states.get(mode)
        if states is None or states[0].shape[1] != x.shape[0]:
            states = self.rnn.begin_state(x.shape[0], ctx=x.context)
        out, states = self.rnn(self.drop(self.embedding(x)), states)
        self._states[mode] = [s.detach() for s in states]
        return self.decoder(self.drop(out))                   # (N, T, vocab) logits


class Perplexity(metric.Loss):
    """``exp`` of the mean per-token cross-entropy (updated with the losses, like Loss)."""

    def __init__(self, name='perplexity'):
        super().__init__(name=name)

    def get(self):
        name, value = super().get()
        return name, math.exp(value) if value == value else value


class ResetStates(EpochBegin):
    """Start every epoch (and its validation) from zero states."""

    def __init__(self, net):
        self.net = net

    def epoch_begin(self, estimator, *args, **kwargs):
        self.net.reset_states()


class ClipGradients(BatchEnd):
    """Clip the global gradient norm before the update (which runs at priority -2000)."""

    def __init__(self, net, max_norm):
        self.params = [p for p in net.collect_params().values() if p.grad_req != 'null']
        self.max_norm = max_norm
        self.priority = -2500

    def batch_end(self, estimator, *args, **kwargs):
        batch = kwargs.get('batch')
        n = batch[0].shape[0] if batch is not None else 1
        grads = [p.grad(p.list_ctx()[0]) for p in self.params]
        # The loss is summed over the batch: clip the per-sample mean gradient's norm.
        xpnet.utils.clip_global_norm(grads, self.max_norm * n)


def stream_loader(dataset, batch_size):
    """Batches whose row ``j`` walks through the ``j``-th contiguous slice of the corpus."""
    n = len(dataset)
    if n < batch_size:
        raise ValueError(f'the corpus gives {n} windows of bptt tokens, fewer than the batch '
                         f'size {batch_size}; use a smaller --batch-size or --bptt')
    k = n // batch_size
    # Over the first k * batch_size windows, [0, k, 2k, ...], [1, k+1, ...], ...: batch b
    # holds window b of each of the batch_size streams.
    sampler = IntervalSampler(k * batch_size, interval=k, rollover=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, last_batch='discard')


def load_data(args):
    with open(args.train, encoding='utf8') as f:
        text = f.read()
    if args.val:
        train = LanguageModelDataset.from_text(text, seq_len=args.bptt)
        with open(args.val, encoding='utf8') as f:
            val = LanguageModelDataset.from_text(f.read(), vocab=train.vocabulary,
                                                 seq_len=args.bptt)
    else:
        lines = text.splitlines()
        cut = max(1, int(len(lines) * 0.9))
        train = LanguageModelDataset.from_text('\n'.join(lines[:cut]), seq_len=args.bptt)
        val = LanguageModelDataset.from_text('\n'.join(lines[cut:]), vocab=train.vocabulary,
                                             seq_len=args.bptt)
    return train, val


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--train', required=True, help='training corpus (plain text)')
    ap.add_argument('--val', help='validation corpus (default: last 10%% of --train)')
    ap.add_argument('--emsize', type=int, default=200, help='embedding size (default 200)')
    ap.add_argument('--nhid', type=int, default=200, help='LSTM hidden units (default 200)')
    ap.add_argument('--nlayers', type=int, default=1, help='LSTM layers (default 1)')
    ap.add_argument('--projection', type=int, default=0,
                    help='LSTMP projection size (default 0: a plain LSTM)')
    ap.add_argument('--dropout', type=float, default=0.2, help='dropout (default 0.2)')
    ap.add_argument('--bptt', type=int, default=35,
                    help='tokens per truncated back-propagation window (default 35)')
    ap.add_argument('--batch-size', type=int, default=20,
                    help='parallel token streams (default 20)')
    ap.add_argument('--epochs', type=int, default=5, help='epochs to train (default 5)')
    ap.add_argument('--lr', type=float, default=20.0, help='SGD learning rate (default 20)')
    ap.add_argument('--clip', type=float, default=0.25,
                    help='global gradient norm clip (default 0.25)')
    ap.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    ap.add_argument('--gpu', action='store_true', help='train on gpu(0)')
    args = ap.parse_args(argv)

    xpnet.random.seed(args.seed)
    ctx = xpnet.gpu(0) if args.gpu else xpnet.cpu()
    train, val = load_data(args)
    vocab = train.vocabulary
    print(f'vocabulary {len(vocab)} tokens; {len(train)} training and {len(val)} validation '
          f'windows of {args.bptt} tokens')
    train_loader = stream_loader(train, args.batch_size)
    val_loader = stream_loader(val, min(args.batch_size, len(val)))

    net = RNNModel(len(vocab), args.emsize, args.nhid, args.nlayers, args.dropout,
                   args.projection)
    net.initialize(xpnet.init.Xavier(), ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': args.lr})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(),
                    train_metrics=[Perplexity()], val_metrics=[Perplexity()],
                    trainer=trainer, context=ctx)
    start = time.time()
    est.fit(train_loader, val_data=val_loader, epochs=args.epochs,
            event_handlers=[ResetStates(net), ClipGradients(net, args.clip),
                            LoggingHandler(log_interval='epoch',
                                           metrics=est.train_metrics + est.val_metrics)])
    train_ppl = est.train_metrics[0].get()[1]
    val_ppl = est.val_metrics[0].get()[1]
    print(f'done in {time.time() - start:.1f}s: training perplexity {train_ppl:.2f}, '
          f'validation perplexity {val_ppl:.2f} (vocabulary {len(vocab)})')
    return train_ppl, val_ppl


if __name__ == '__main__':
    main()
