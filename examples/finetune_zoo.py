"""Fine-tune a model-zoo network with the Estimator, Gluon 1.x style (``import xpnet as mx``).

The classic Gluon recipe: take a zoo model (with its ImageNet weights when the MXNet
model-zoo file is in ``--root``; xpnet never downloads it), build the same architecture
with a new output layer for our classes, reuse the pretrained ``features`` and train with a
10x learning rate on the new head. The data are scikit-learn's 8x8 digits, upscaled to
small RGB images (no download). Small images keep the run short::

    python examples/finetune_zoo.py      # resnet18_v1: about 93% after 4 epochs from scratch
    python examples/finetune_zoo.py --root ~/.mxnet/models     # with resnet18_v1-a0666292.params
    python examples/finetune_zoo.py --model mobilenetv2_0.25 --size 64
"""
import argparse
import os
import time

import numpy as np

import xpnet as mx
from xpnet import gluon
from xpnet.gluon.model_zoo import model_store, vision

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def load_images(size, limit=None, seed=0):
    """Digits as normalized (N, 3, size, size) float32 images and float labels."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(y))[:limit]
    x = (x[order] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x = x.repeat(size // 8, axis=2).repeat(size // 8, axis=3).repeat(3, axis=1)
    return (x - MEAN) / STD, y[order].astype(np.float32)


def build(model, classes, root, ctx):
    """The zoo model with a new ``classes``-way output; pretrained features if available."""
    net = vision.get_model(model, classes=classes)
    name = model.lower()
    has_file = name in model_store._model_sha1 and os.path.exists(os.path.join(
        os.path.expanduser(root), f'{name}-{model_store.short_hash(name)}.params'))
    if has_file:
        pretrained = vision.get_model(model, pretrained=True, root=root, ctx=ctx)
        net.features = pretrained.features          # the same Parameters: fine-tuned in place
        net.output.initialize(mx.init.Xavier(), ctx=ctx)
        net.output.collect_params().setattr('lr_mult', 10)
    else:
        net.initialize(mx.init.Xavier(), ctx=ctx)
    return net, has_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='resnet18_v1',
                        help="a model-zoo name (see vision.model_names())")
    parser.add_argument('--root', default=model_store.default_root(),
                        help='where the MXNet model-zoo .params files are')
    parser.add_argument('--size', type=int, default=32, help='image side (a multiple of 8)')
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--lr', type=float, default=0.003)
    parser.add_argument('--limit', type=int, default=None, help='use only this many images')
    args = parser.parse_args(argv)

    mx.random.seed(0)
    ctx = mx.cpu()
    x, y = load_images(args.size, args.limit)
    split = int(0.8 * len(y))
    train = gluon.data.DataLoader(gluon.data.ArrayDataset(x[:split], y[:split]),
                                  batch_size=args.batch_size, shuffle=True)
    val = gluon.data.DataLoader(gluon.data.ArrayDataset(x[split:], y[split:]),
                                batch_size=128)
    net, pretrained = build(args.model, 10, args.root, ctx)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': args.lr})
    est = mx.estimator.Estimator(net, gluon.loss.SoftmaxCrossEntropyLoss(),
                                 train_metrics=mx.metric.Accuracy(), trainer=trainer,
                                 context=ctx)
    start = time.time()
    est.fit(train, val_data=val, epochs=args.epochs)
    accuracy = est.evaluate(val)['validation accuracy']
    print(f'{args.model} ({"pretrained features" if pretrained else "random init"}): '
          f'validation accuracy {accuracy:.3f} after {args.epochs} epochs in '
          f'{time.time() - start:.1f}s')
    return accuracy


if __name__ == '__main__':
    main()
