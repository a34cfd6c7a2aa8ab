"""Gluon 1.x scripts, written exactly as for MXNet 1.9 (``import mxnet as mx``).

Shared by ``tests/test_gluon_scripts.py`` (which runs them on xpnet after changing the
import lines) and ``tests/oracle/gen_gluon_scripts.py`` (which runs them on MXNet from the
same initial parameters). Each script leaves its outcome in ``RESULT``. ``INIT_HOOK``
marks where the runner may load initial parameters (``pass`` by default).
"""
import textwrap

__all__ = ['MLP_SCRIPT', 'CNN_SCRIPT', 'LM_SCRIPT', 'CUSTOM_SCRIPT', 'prepare']

MLP_SCRIPT = '''
import numpy as np
import mxnet as mx
from mxnet import gluon, autograd, nd
from mxnet.gluon import nn

mx.random.seed(1)
rng = np.random.RandomState(0)
centers = rng.randn(4, 16) * 3
labels = rng.randint(0, 4, 512)
data = (centers[labels] + rng.randn(512, 16)).astype('float32')
train = gluon.data.DataLoader(gluon.data.ArrayDataset(nd.array(data), nd.array(labels)),
                              batch_size=64, shuffle=True, last_batch='discard')
ctx = mx.gpu() if mx.context.num_gpus() > 0 else mx.cpu()
net = nn.Sequential()
with net.name_scope():
    net.add(nn.Dense(32, activation='relu'))
    net.add(nn.Dense(4))
net.collect_params().initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
softmax_cross_entropy = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
metric = mx.metric.Accuracy()
for epoch in range(3):
    metric.reset()
    for i, (x, y) in enumerate(train):
        x = x.as_in_context(ctx)
        y = y.as_in_context(ctx)
        with autograd.record():
            output = net(x)
            loss = softmax_cross_entropy(output, y)
        loss.backward()
        trainer.step(x.shape[0])
        metric.update([y], [output])
    name, acc = metric.get()
RESULT = acc
'''

CNN_SCRIPT = '''
import numpy as np
import mxnet as mx
from mxnet import gluon, autograd, nd
from mxnet.gluon import nn

mx.random.seed(2)
rng = np.random.RandomState(1)
x = rng.rand(64, 1, 12, 12).astype('float32')
y = (x[:, 0, :6].mean(axis=(1, 2)) > x[:, 0, 6:].mean(axis=(1, 2))).astype('float32')
net = nn.HybridSequential()
with net.name_scope():
    net.add(nn.Conv2D(channels=8, kernel_size=3, activation='relu'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Flatten(),
            nn.Dense(16, activation='relu'),
            nn.Dense(2))
net.initialize(mx.init.Xavier(), ctx=mx.cpu())
net(nd.array(x[:1]))
INIT_HOOK
net.hybridize()
trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
losses = []
for step in range(30):
    data, label = nd.array(x), nd.array(y)
    with autograd.record():
        L = loss_fn(net(data), label)
    L.backward()
    trainer.step(data.shape[0])
    losses.append(L.mean().asscalar())
RESULT = losses
'''

LM_SCRIPT = '''
import numpy as np
import mxnet as mx
from mxnet import gluon, autograd
from mxnet.gluon import nn, rnn

class RNNModel(gluon.Block):
    def __init__(self, mode, vocab_size, num_embed, num_hidden, num_layers, dropout=0.5,
                 tie_weights=False, **kwargs):
        super(RNNModel, self).__init__(**kwargs)
        with self.name_scope():
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(vocab_size, num_embed,
                                        weight_initializer=mx.init.Uniform(0.1))
            self.rnn = rnn.LSTM(num_hidden, num_layers, dropout=dropout,
                                input_size=num_embed)
            if tie_weights:
                self.decoder = nn.Dense(vocab_size, in_units=num_hidden,
                                        params=self.encoder.params)
            else:
                self.decoder = nn.Dense(vocab_size, in_units=num_hidden)
            self.num_hidden = num_hidden

    def forward(self, inputs, hidden):
        emb = self.drop(self.encoder(inputs))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output.reshape((-1, self.num_hidden)))
        return decoded, hidden

    def begin_state(self, *args, **kwargs):
        return self.rnn.begin_state(*args, **kwargs)

def detach(hidden):
    if isinstance(hidden, (tuple, list)):
        hidden = [i.detach() for i in hidden]
    else:
        hidden = hidden.detach()
    return hidden

mx.random.seed(3)
context = mx.cpu(0)
vocab, bptt, batch_size = 12, 5, 4
corpus = np.tile(np.arange(vocab), 20).astype('float32')
nbatch = len(corpus) // batch_size
data = mx.nd.array(corpus[:nbatch * batch_size].reshape(batch_size, nbatch).T)
model = RNNModel('lstm', vocab, 8, 8, 1, 0.0, True)
model.collect_params().initialize(mx.init.Xavier(), ctx=context)
INIT_HOOK
trainer = gluon.Trainer(model.collect_params(), 'sgd',
                        {'learning_rate': 1.0, 'momentum': 0, 'wd': 0})
loss = gluon.loss.SoftmaxCrossEntropyLoss()
totals = []
for epoch in range(4):
    total_L = 0.0
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=batch_size, ctx=context)
    for i in range(0, data.shape[0] - 1, bptt):
        seq_len = min(bptt, data.shape[0] - 1 - i)
        x = data[i:i + seq_len]
        target = data[i + 1:i + 1 + seq_len]
        hidden = detach(hidden)
        with autograd.record():
            output, hidden = model(x, hidden)
            L = loss(output, target.reshape((-1,)))
            L.backward()
        grads = [i.grad(context) for i in model.collect_params().values()]
        gluon.utils.clip_global_norm(grads, 0.25 * bptt * batch_size)
        trainer.step(batch_size)
        total_L += mx.nd.sum(L).asscalar()
    totals.append(total_L)
assert model.decoder.weight is model.encoder.weight
RESULT = totals
'''

CUSTOM_SCRIPT = '''
import numpy as np
import mxnet as mx
from mxnet import gluon, autograd, nd
from mxnet.test_utils import assert_almost_equal

class Linear(gluon.HybridBlock):
    def __init__(self, units, in_units, **kwargs):
        super(Linear, self).__init__(**kwargs)
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(units, in_units),
                                          init=mx.init.Xavier())
            self.bias = self.params.get('bias', shape=(units,), init='zeros')

    def hybrid_forward(self, F, x, weight, bias):
        return F.FullyConnected(x, weight, bias, num_hidden=weight.shape[0])

net = gluon.nn.HybridSequential()
net.add(Linear(3, 5), gluon.nn.Activation('tanh'), Linear(1, 3))
net.initialize()
x = nd.random.uniform(shape=(8, 5))
target = nd.random.normal(shape=(8, 1))
trainer = gluon.Trainer(net.collect_params(), mx.optimizer.Adam(learning_rate=0.05))
l2 = gluon.loss.L2Loss()
first = None
for _ in range(40):
    with autograd.record():
        L = l2(net(x), target)
    L.backward()
    trainer.step(8)
    first = L.mean().asscalar() if first is None else first
net.save_parameters('PARAMS')
again = gluon.nn.HybridSequential()
again.add(Linear(3, 5), gluon.nn.Activation('tanh'), Linear(1, 3))
again.load_parameters('PARAMS')
assert_almost_equal(again(x), net(x))
mx.nd.save('ARRAYS', {'x': x})
assert_almost_equal(mx.nd.load('ARRAYS')['x'], x)
RESULT = (first, L.mean().asscalar(), sorted(net.collect_params().keys()))
'''


def prepare(source, framework='xpnet', **replace):
    """The script's code with its ``mxnet`` imports changed to ``framework`` and each
    ``key`` of ``replace`` replaced by its value."""
    lines = []
    for line in textwrap.dedent(source).splitlines():
        if line.startswith(('import mxnet', 'from mxnet')):
            line = line.replace('mxnet', framework)
        lines.append(line)
    code = '\n'.join(lines)
    for key, value in replace.items():
        code = code.replace(key, value)
    return code.replace('INIT_HOOK', 'pass')
