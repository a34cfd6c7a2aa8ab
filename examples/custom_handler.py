"""A custom event handler in a few lines: linear learning-rate warm-up.

    python examples/custom_handler.py
"""
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


x = np.random.RandomState(0).rand(512, 10).astype(np.float32)
y = (x.sum(axis=1) > 5).astype(np.float32)
net = nn.Sequential()
net.add(nn.Dense(16, activation='relu'), nn.Dense(2))
net.initialize(init='xavier')
trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.0, 'momentum': 0.9})
est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
history = est.fit(DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True), epochs=5,
                  event_handlers=[WarmUp(target=0.2, steps=40)])
print('learning rate per epoch:', history['learning_rate'])
