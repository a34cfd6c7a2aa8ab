"""Datasets: indexable collections of samples (Gluon 1.9's ``gluon.data.dataset``).

A dataset is anything with ``__getitem__(i)`` and ``__len__()``; NumPy arrays, NDArrays
and lists work as they are. :class:`Dataset` adds the lazy combinators ``transform``,
``transform_first``, ``filter``, ``take``, ``shard`` and ``sample``.

Example::

    ds = ArrayDataset(images, labels)                # samples (image, label)
    ds = ds.transform_first(lambda x: x.astype('float32') / 255)
    ds[0]                                            # (transformed image, label)
"""
import numpy as np

from ..backend import cpu, to_device, to_host
from ..ndarray import NDArray, _wrap

__all__ = ['Dataset', 'SimpleDataset', 'ArrayDataset']


class Dataset:
    """Base class of datasets: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, idx):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _gather(self, indices):
        """The batch ``default_batchify_fn([self[i] for i in indices])`` would build, computed
        in one vectorized step, or NotImplemented. The DataLoader's fast path for array-backed
        datasets; it must give exactly the per-sample result."""
        return NotImplemented

    def filter(self, fn):
        """A dataset of the samples for which ``fn(sample)`` is True (``fn`` runs now, once
        per sample; a lazy transform before it is applied again at each access)."""
        from .sampler import FilterSampler
        return _SampledDataset(self, FilterSampler(fn, self))

    def shard(self, num_shards, index):
        """The ``index``-th of ``num_shards`` contiguous parts of this dataset; sizes differ
        by at most one (the first ``len % num_shards`` parts get the extra sample)."""
        from .sampler import SequentialSampler
        if not isinstance(num_shards, (int, np.integer)) or num_shards <= 0:
            raise ValueError(f'shard: num_shards must be a positive integer, got {num_shards!r}')
        if not isinstance(index, (int, np.integer)) or not 0 <= index < num_shards:
            raise ValueError(f'shard: index must be in [0, {num_shards}), got {index!r}')
        length = len(self)
        shard_len, rest = divmod(length, num_shards)
        start = shard_len * index + min(index, rest)
        end = start + shard_len + (index < rest)
        return _SampledDataset(self, SequentialSampler(end - start, start))

    def take(self, count):
        """A dataset of the first ``count`` samples (all of them if ``count`` is None or
        larger than the dataset)."""
        from .sampler import SequentialSampler
        if count is None or count > len(self):
            count = len(self)
        if count < 0:
            raise ValueError(f'take: count must be >= 0, got {count}')
        return _SampledDataset(self, SequentialSampler(count))

    def sample(self, sampler):
        """A dataset of the samples at the indices ``sampler`` yields (read once, now)."""
        from .sampler import Sampler
        if not isinstance(sampler, Sampler):
            raise TypeError(f'sample: expected an xpnet.data.Sampler, got {type(sampler).__name__}')
        return _SampledDataset(self, sampler)

    def transform(self, fn, lazy=True):
        """A dataset whose samples are ``fn(sample)`` (``fn(*sample)`` for tuple samples).

        Args:
            fn: the transformation.
            lazy: if True, ``fn`` runs at each access (needed for random augmentation);
                if False, every sample is transformed once, now.
        """
        trans = _LazyTransformDataset(self, fn)
        if lazy:
            return trans
        return SimpleDataset([trans[i] for i in range(len(trans))])

    def transform_first(self, fn, lazy=True):
        """Like :meth:`transform`, but only the first element of each sample (the data,
        not the label) goes through ``fn``."""
        return self.transform(_TransformFirstClosure(fn), lazy)


class SimpleDataset(Dataset):
    """A Dataset over any object with ``len()`` and ``[]`` (a list, an array...).

    Args:
        data: the samples.
    """

    def __init__(self, data):
        self._data = data

    def __len__(self):
        return len(self._data)

    def __getitem__(self, idx):
        return self._data[idx]

    def _gather(self, indices):
        return _gather_array(self._data, indices)


class ArrayDataset(Dataset):
    """Zips several equally long arrays/datasets: sample ``i`` is ``(a[i], b[i], ...)``
    (just ``a[i]`` for a single array).

    1-D NDArrays are converted to NumPy arrays so that their samples are scalars (as in
    Gluon): labels then batch without a per-sample device round trip.

    Args:
        *args: NDArrays, NumPy arrays, lists or datasets, all of the same length.

    Example::

        >>> ds = ArrayDataset(np.zeros((4, 3)), [0, 1, 0, 1])
        >>> ds[1]
        (array([0., 0., 0.]), 1)
    """

    def __init__(self, *args):
        if not args:
            raise ValueError('ArrayDataset needs at least one array')
        lengths = [len(a) for a in args]
        if len(set(lengths)) != 1:
            detail = ', '.join(f'array {i}: {n}' for i, n in enumerate(lengths))
            raise ValueError(f'ArrayDataset: all arrays must have the same length; got {detail}')
        self._length = lengths[0]
        self._data = [a.asnumpy() if isinstance(a, NDArray) and a.ndim == 1 else a
                      for a in args]

    def __getitem__(self, idx):
        if len(self._data) == 1:
            return self._data[0][idx]
        return tuple(data[idx] for data in self._data)

    def __len__(self):
        return self._length

    def _gather(self, indices):
        parts = []
        for data in self._data:
            part = _gather_array(data, indices)
            if part is NotImplemented:
                return NotImplemented
            parts.append(part)
        return parts[0] if len(parts) == 1 else parts


def _gather_array(data, indices):
    """``data[indices]`` as a batch on cpu(0), for NumPy arrays and NDArrays of ndim >= 1.

    Matches ``default_batchify_fn`` on the samples: an NDArray/NumPy row or a NumPy scalar
    per index, stacked with their dtype."""
    if getattr(data, 'ndim', 0) < 1 or data.dtype.kind not in 'biuf':
        return NotImplemented
    if isinstance(data, np.ndarray):
        return _wrap(data[np.asarray(indices, dtype=np.intp)], cpu(0))
    if isinstance(data, NDArray):
        idx = to_device(np.asarray(indices, dtype=np.intp), data.context)
        with data.context.use():
            rows = data.data[idx]
        return _wrap(np.ascontiguousarray(to_host(rows)), cpu(0))
    return NotImplemented


class _LazyTransformDataset(Dataset):
    """Applies ``fn`` at each access (tuple samples are unpacked into arguments)."""

    def __init__(self, data, fn):
        self._data = data
        self._fn = fn

    def __len__(self):
        return len(self._data)

    def __getitem__(self, idx):
        item = self._data[idx]
        if isinstance(item, tuple):
            return self._fn(*item)
        return self._fn(item)


class _TransformFirstClosure:
    """A callable object rather than a closure, so the transform can be pickled."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, x, *args):
        if args:
            return (self._fn(x),) + args
        return self._fn(x)


class _SampledDataset(Dataset):
    """The samples of ``dataset`` at the indices ``sampler`` yields."""

    def __init__(self, dataset, sampler):
        self._dataset = dataset
        self._sampler = sampler
        self._indices = list(iter(sampler))

    def __len__(self):
        return len(self._indices)

    def __getitem__(self, idx):
        return self._dataset[self._indices[idx]]

    def _gather(self, indices):
        gather = getattr(self._dataset, '_gather', None)
        if gather is None:
            return NotImplemented
        return gather([self._indices[i] for i in indices])
