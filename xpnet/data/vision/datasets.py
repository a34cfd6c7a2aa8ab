"""MNIST, Fashion-MNIST and CIFAR-10/100 read from their standard files in a local folder.

Nothing is ever downloaded: a missing file raises ``FileNotFoundError`` naming the files
expected and where to get them. Samples are as Gluon gives them: ``(image, label)`` with
the image an HWC uint8 NDArray on cpu(0) and the label a NumPy int32 scalar; a
``transform(image, label)`` is applied per sample.

Example::

    train = MNIST('~/data/mnist', train=True)       # train-images-idx3-ubyte[.gz], ...
    image, label = train[0]                         # (28, 28, 1) uint8, int32
"""
import gzip
import os
import struct

import numpy as np

from ...backend import cpu
from ...ndarray import _wrap
from ..dataset import Dataset

__all__ = ['MNIST', 'FashionMNIST', 'CIFAR10', 'CIFAR100']


def _data_home():
    return os.path.join(os.path.expanduser(os.environ.get('XPNET_HOME', '~/.xpnet')), 'datasets')


class _ImageDataset(Dataset):
    """Images (N, H, W, C) uint8 and labels (N,) int32 held as host arrays."""

    def __init__(self, root, transform):
        self._root = os.path.expanduser(os.fspath(root))
        self._transform = transform
        self._data, self._label = self._get_data()

    def __getitem__(self, idx):
        image = _wrap(self._data[idx].copy(), cpu(0))
        label = self._label[idx]
        if self._transform is not None:
            return self._transform(image, label)
        return image, label

    def __len__(self):
        return len(self._label)

    def _gather(self, indices):
        if self._transform is not None:
            return NotImplemented
        idx = np.asarray(indices, dtype=np.intp)
        return [_wrap(self._data[idx], cpu(0)), _wrap(self._label[idx], cpu(0))]

    def _get_data(self):
        raise NotImplementedError

    def _find(self, names, subdirs, source):
        """The first existing ``root[/subdir]/name``; FileNotFoundError listing all tried."""
        tried = []
        for sub in ('',) + tuple(subdirs):
            for name in names:
                path = os.path.join(self._root, sub, name)
                if os.path.isfile(path):
                    return path
                tried.append(path)
        raise FileNotFoundError(
            f'{type(self).__name__}: cannot find {names[0]!r} under {self._root!r} (tried: '
            f'{", ".join(tried)}). xpnet never downloads datasets: get the files from '
            f'{source} and put them in that folder.')


def _read_idx(path):
    """An IDX file (the MNIST format; gzipped or not) as a uint8 array of its shape."""
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b'\x00\x00' or raw[2] != 0x08:
        raise ValueError(f'{path}: not an IDX file of unsigned bytes (header {raw[:4]!r})')
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f'{path}: truncated IDX header')
    dims = struct.unpack(f'>{ndim}I', raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(f'{path}: the header announces shape {dims} ({expected} bytes) but the '
                         f'file holds {len(raw) - header} bytes of data (truncated or corrupt)')
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class MNIST(_ImageDataset):
    """The MNIST handwritten digits from local IDX files.

    ``root`` must hold ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (or
    ``t10k-...`` for the test set), gzipped (``.gz``) or not. Images are (28, 28, 1) uint8.

    Args:
        root: folder with the files (default ``$XPNET_HOME/datasets/mnist``,
            ``XPNET_HOME`` defaulting to ``~/.xpnet``).
        train: the training set (60,000 images) or the test set (10,000).
        transform: ``fn(image, label) -> sample`` applied at each access, e.g.
            ``lambda x, y: (x.astype('float32') / 255, y)``.
    """
    _source = ('http://yann.lecun.com/exdb/mnist/ (mirror: '
               'https://ossci-datasets.s3.amazonaws.com/mnist/)')
    _subdirs = ('raw',)

    def __init__(self, root=os.path.join(_data_home(), 'mnist'), train=True, transform=None):
        self._train = train
        super().__init__(root, transform)

    def _idx_file(self, stem):
        dotted = stem.replace('-idx', '.idx')   # some mirrors spell it train-images.idx3-ubyte
        names = [stem, stem + '.gz', dotted, dotted + '.gz']
        return self._find(names, self._subdirs, self._source)

    def _get_data(self):
        prefix = 'train' if self._train else 't10k'
        data_path = self._idx_file(f'{prefix}-images-idx3-ubyte')
        label_path = self._idx_file(f'{prefix}-labels-idx1-ubyte')
        images, labels = _read_idx(data_path), _read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(f'{type(self).__name__}: expected images (N, rows, cols) and labels '
                             f'(N,), got {images.shape} from {data_path} and {labels.shape} from '
                             f'{label_path}')
        if len(images) != len(labels):
            raise ValueError(f'{type(self).__name__}: {data_path} has {len(images)} images but '
                             f'{label_path} has {len(labels)} labels')
        return images.reshape(images.shape + (1,)), labels.astype(np.int32)


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST (same files and format as :class:`MNIST`).

    Args:
        root: folder with the files (default ``$XPNET_HOME/datasets/fashion-mnist``).
        train: the training or the test set.
        transform: ``fn(image, label)`` applied at each access.
    """
    _source = 'https://github.com/zalandoresearch/fashion-mnist'

    def __init__(self, root=os.path.join(_data_home(), 'fashion-mnist'), train=True,
                 transform=None):
        super().__init__(root, train, transform)


class CIFAR10(_ImageDataset):
    """CIFAR-10 from the binary version's files (images (32, 32, 3) uint8).

    ``root`` (or ``root/cifar-10-batches-bin``) must hold ``data_batch_1.bin`` ...
    ``data_batch_5.bin`` for the training set and ``test_batch.bin`` for the test set;
    each record is a label byte followed by 3072 bytes of CHW pixels.

    Args:
        root: folder with the files (default ``$XPNET_HOME/datasets/cifar10``).
        train: the training set (50,000 images) or the test set (10,000).
        transform: ``fn(image, label)`` applied at each access.
    """
    _source = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (extract it)'
    _subdirs = ('cifar-10-batches-bin',)
    _label_bytes = 1

    def __init__(self, root=os.path.join(_data_home(), 'cifar10'), train=True, transform=None):
        self._train = train
        super().__init__(root, transform)

    def _files(self):
        if self._train:
            return [f'data_batch_{i}.bin' for i in range(1, 6)]
        return ['test_batch.bin']

    def _label_column(self):
        return 0

    def _read_batch(self, path):
        record = self._label_bytes + 3072
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % record:
            raise ValueError(f'{path}: {raw.size} bytes is not a whole number of {record}-byte '
                             'records (truncated or not the binary version)')
        raw = raw.reshape(-1, record)
        images = raw[:, self._label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, raw[:, self._label_column()].astype(np.int32)

    def _get_data(self):
        paths = [self._find([name], self._subdirs, self._source) for name in self._files()]
        images, labels = zip(*(self._read_batch(p) for p in paths))
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


class CIFAR100(CIFAR10):
    """CIFAR-100 from the binary version's ``train.bin`` / ``test.bin`` (in ``root`` or
    ``root/cifar-100-binary``); each record is coarse label, fine label, 3072 pixels.

    Args:
        root: folder with the files (default ``$XPNET_HOME/datasets/cifar100``).
        fine_label: the 100 fine classes instead of the 20 coarse ones.
        train: the training set or the test set.
        transform: ``fn(image, label)`` applied at each access.
    """
    _source = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz (extract it)'
    _subdirs = ('cifar-100-binary',)
    _label_bytes = 2

    def __init__(self, root=os.path.join(_data_home(), 'cifar100'), fine_label=False, train=True,
                 transform=None):
        self._fine_label = bool(fine_label)
        super().__init__(root, train, transform)

    def _files(self):
        return ['train.bin' if self._train else 'test.bin']

    def _label_column(self):
        return int(self._fine_label)
