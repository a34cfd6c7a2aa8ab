"""Metrics of class predictions: accuracies, F1/MCC/PCC, and the probability-based
cross-entropy, negative log-likelihood and perplexity."""
import copy
import math
import numbers

import numpy

from ..backend import context_of, to_host
from ..backend import kernels as _kernels
from ..backend.checks import check_labels, flush_device_checks
from ._inputs import (_device, _device_label, _host, _label_flag, _on_device, _pairs,
                      _pick_host, _on_preds_device, _rows)
from .base import EvalMetric, _alias, _host_vector, _sum_rows, register

__all__ = ['Accuracy', 'TopKAccuracy', 'F1', 'MCC', 'PCC', 'Perplexity', 'CrossEntropy',
           'NegativeLogLikelihood']


# ---- class indices ------------------------------------------------------------------------------

@_alias('acc')
class Accuracy(EvalMetric):
    """Fraction of predictions equal to the label.

    A prediction of another shape than its label is reduced by arg-max over ``axis``
    (class scores); one of the label's shape holds class indices.

    Args:
        axis: the class axis of the scores (default 1).
    """

    def __init__(self, axis=1, name='accuracy', output_names=None, label_names=None):
        super().__init__(name, axis=axis, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self.axis = axis

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name, flush=False):
            pd, xp = _device(pred)
            if _on_device(xp):
                self._update_on_device(label, pd, xp)
                continue
            flush_device_checks()
            lab = _host(label)
            classes = None              # predictions of the label's shape: class indices
            if tuple(pd.shape) != tuple(lab.shape) and pd.ndim > self.axis:
                classes = pd.shape[self.axis]
                pd = xp.argmax(pd, axis=self.axis)
            check_labels(lab, classes, self.name)
            pred_label = to_host(pd).astype(numpy.int32, copy=False).reshape(-1)
            lab = lab.astype(numpy.int32, copy=False).reshape(-1)
            if pred_label.size != lab.size:
                raise ValueError(f'{self.name}: label shape {tuple(_host(label).shape)} does '
                                 f'not match prediction shape {tuple(_device(pred)[0].shape)}')
            self._accumulate(int(numpy.count_nonzero(pred_label == lab)), lab.size)

    def _update_on_device(self, label, pd, xp):
        """The update of one device's batch, accumulated on the device (one fused kernel
        for (batch, classes) scores)."""
        from ..backend.kernels.checks import LABEL_DTYPES
        from ..backend.kernels.metrics import accuracy
        ctx = context_of(pd)
        lab = _device_label(label, pd, xp)
        shape = tuple(pd.shape)
        classes = None
        if shape != tuple(lab.shape) and pd.ndim > self.axis:
            classes = pd.shape[self.axis]
            if pd.ndim == 2 and self.axis in (1, -1) and lab.size == pd.shape[0] \
                    and _kernels.fused(xp, pd.dtype) and lab.dtype in LABEL_DTYPES:
                accuracy(xp, xp.ascontiguousarray(pd), lab, self._device_accumulator(ctx),
                         _label_flag(ctx, self.name, classes))
                return
            pd = xp.argmax(pd, axis=self.axis)
        if pd.size != lab.size:
            raise ValueError(f'{self.name}: label shape {tuple(lab.shape)} does not match '
                             f'prediction shape {shape}')
        check_labels(lab, classes, self.name)
        hits = (pd.reshape(-1).astype(numpy.int32) ==
                lab.reshape(-1).astype(numpy.int32)).sum()
        self._add_device(ctx, hits, lab.size)


@_alias('top_k_accuracy', 'top_k_acc')
class TopKAccuracy(EvalMetric):
    """Fraction of samples whose label is among the ``top_k`` highest scores.

    Args:
        top_k: how many of the best classes count (the name gets ``_<top_k>``).
    """

    def __init__(self, top_k=1, name='top_k_accuracy', output_names=None, label_names=None):
        super().__init__(name, top_k=top_k, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        if not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise ValueError(f'TopKAccuracy: top_k must be a positive integer, got {top_k!r}')
        self.top_k = int(top_k)
        self.name += f'_{self.top_k}'

    def get_config(self):
        config = super().get_config()
        suffix = f'_{self.top_k}'
        if config['name'].endswith(suffix):     # the constructor appends it again
            config['name'] = config['name'][:-len(suffix)]
        return config

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            p, lab = _host(pred), _host(label)
            if p.ndim > 2:
                raise ValueError(f'{self.name}: predictions must be (batch, classes) scores, '
                                 f'got shape {p.shape}')
            if p.shape[0] != lab.size:
                raise ValueError(f'{self.name}: label shape {tuple(lab.shape)} does not '
                                 f'match prediction shape {p.shape}')
            check_labels(lab, p.shape[1] if p.ndim == 2 else None, self.name)
            lab = lab.astype(numpy.int64, copy=False).reshape(-1)
            if p.ndim == 1:          # already class indices
                correct = numpy.count_nonzero(p.astype(numpy.int64) == lab)
            else:
                k = min(self.top_k, p.shape[1])
                top = numpy.argpartition(p.astype(numpy.float32, copy=False), -k,
                                         axis=1)[:, -k:]
                correct = numpy.count_nonzero((top == lab[:, None]).any(axis=1))
            self._accumulate(int(correct), lab.size)


class _BinaryStats:
    """True/false positive/negative counts, local and global, for F1 and MCC."""
    FIELDS = ('tp', 'fp', 'fn', 'tn')

    def __init__(self):
        self.reset()

    def reset(self):
        self.local = dict.fromkeys(self.FIELDS, 0)
        self.glob = dict.fromkeys(self.FIELDS, 0)

    def reset_local(self):
        self.local = dict.fromkeys(self.FIELDS, 0)

    def update(self, label, pred, name):
        pd, xp = _device(pred)
        if pd.ndim != 2:
            raise ValueError(f'{name}: predictions must be (batch, classes) scores, got shape '
                             f'{tuple(pd.shape)}')
        pred_label = to_host(xp.argmax(pd, axis=1))
        check_labels(_host(label), pd.shape[1], name)
        lab = _host(label).astype(numpy.int32, copy=False).reshape(-1)
        if lab.size != pred_label.size:
            raise ValueError(f'{name}: label shape {tuple(_host(label).shape)} does not match '
                             f'prediction shape {tuple(pd.shape)}')
        if lab.size and (lab.min() < 0 or lab.max() > 1) and numpy.unique(lab).size > 2:
            raise ValueError(f'{name} currently only supports binary classification '
                             f'(labels {numpy.unique(lab)[:5].tolist()}...)')
        pt, lt = pred_label == 1, lab == 1
        counts = {'tp': int(numpy.count_nonzero(pt & lt)),
                  'fp': int(numpy.count_nonzero(pt & ~lt)),
                  'fn': int(numpy.count_nonzero(~pt & lt)),
                  'tn': int(numpy.count_nonzero(~pt & ~lt))}
        for k, v in counts.items():
            self.local[k] += v
            self.glob[k] += v

    @staticmethod
    def total(c):
        return c['tp'] + c['fp'] + c['fn'] + c['tn']

    @staticmethod
    def fscore(c):
        tp, fp, fn = c['tp'], c['fp'], c['fn']
        precision = tp / (tp + fp) if tp + fp > 0 else 0.
        recall = tp / (tp + fn) if tp + fn > 0 else 0.
        if precision + recall > 0:
            return 2 * precision * recall / (precision + recall)
        return 0.

    @staticmethod
    def mcc(c):
        if not _BinaryStats.total(c):
            return 0.
        tp, fp, fn, tn = (float(c[k]) for k in ('tp', 'fp', 'fn', 'tn'))
        denom = 1.
        for t in (tp + fp, tp + fn, tn + fp, tn + fn):
            if t != 0.:      # zero factors are left out (MXNet's convention)
                denom *= t
        return (tp * tn - fp * fn) / math.sqrt(denom)

    def state(self):
        return {'local': dict(self.local), 'global': dict(self.glob)}

    def load(self, state):
        self.local = {k: int(state['local'][k]) for k in self.FIELDS}
        self.glob = {k: int(state['global'][k]) for k in self.FIELDS}


class _BinaryMetric(EvalMetric):
    """F1/MCC: ``average='macro'`` averages the per-update scores, ``'micro'`` computes one
    score from the counts of every update."""
    _score = None

    def __init__(self, name, output_names, label_names, average):
        if average not in ('macro', 'micro'):
            raise ValueError(f"{type(self).__name__}: average must be 'macro' or 'micro', got "
                             f'{average!r}')
        self.average = average
        self._stats = _BinaryStats()
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True, average=average)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            self._stats.update(label, pred, self.name)
        score, st = type(self)._score, self._stats
        if self.average == 'macro':
            self._accumulate(score(st.local), 1)
            st.reset()
        else:
            self.sum_metric = score(st.local) * st.total(st.local)
            self.num_inst = st.total(st.local)
            self.global_sum_metric = score(st.glob) * st.total(st.glob)
            self.global_num_inst = st.total(st.glob)

    def reset(self):
        super().reset()
        self._stats.reset()

    def reset_local(self):
        super().reset_local()
        self._stats.reset_local()

    def reduction_state(self):
        if self.average == 'macro':       # per-update scores: they add up as they are
            return super().reduction_state()
        return _host_vector([self._stats.local[k] for k in _BinaryStats.FIELDS])

    def merged(self, states):
        if self.average == 'macro':
            return super().merged(states)
        counts = dict(zip(_BinaryStats.FIELDS, _sum_rows(states).tolist()))
        out = copy.copy(self)
        total = _BinaryStats.total(counts)
        out.sum_metric, out.num_inst = type(self)._score(counts) * total, total
        return out

    def _extra_state(self):
        return {'counts': self._stats.state()}

    def _load_extra_state(self, state):
        if 'counts' in state:
            self._stats.load(state['counts'])


@register
class F1(_BinaryMetric):
    """F1 score of a binary classification: ``2 * precision * recall / (precision + recall)``.

    Predictions are ``(batch, 2)`` scores (arg-max gives the class), labels 0/1.

    Args:
        average: ``'macro'`` (mean of the per-update F1, default) or ``'micro'``.
    """
    _score = staticmethod(_BinaryStats.fscore)

    def __init__(self, name='f1', output_names=None, label_names=None, average='macro'):
        super().__init__(name, output_names, label_names, average)


@register
class MCC(_BinaryMetric):
    """Matthews correlation coefficient of a binary classification
    (zero factors of the denominator are replaced by 1).

    Args:
        average: ``'macro'`` (default) or ``'micro'``, as for :class:`F1`.
    """
    _score = staticmethod(_BinaryStats.mcc)

    def __init__(self, name='mcc', output_names=None, label_names=None, average='macro'):
        super().__init__(name, output_names, label_names, average)


@register
class PCC(EvalMetric):
    """Multiclass Matthews correlation (Pearson correlation of the confusion matrix)."""

    def __init__(self, name='pcc', output_names=None, label_names=None,
                 has_global_stats=True):
        self.k = 2
        self.lcm = numpy.zeros((2, 2))
        self.gcm = numpy.zeros((2, 2))
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=has_global_stats)

    def _grow(self, k):
        pad = ((0, k - self.k), (0, k - self.k))
        self.lcm = numpy.pad(self.lcm, pad)
        self.gcm = numpy.pad(self.gcm, pad)
        self.k = k

    @staticmethod
    def _calc(cmat):
        n = cmat.sum()
        x, y = cmat.sum(axis=1), cmat.sum(axis=0)
        cov_xx = numpy.sum(x * (n - x))
        cov_yy = numpy.sum(y * (n - y))
        if cov_xx == 0 or cov_yy == 0:
            return float('nan')
        cov_xy = numpy.sum(cmat.diagonal() * n - x * y)
        return float(cov_xy / (cov_xx * cov_yy) ** 0.5)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            pd, xp = _device(pred)
            classes = None
            if tuple(pd.shape) != tuple(_host(label).shape):
                classes = pd.shape[1]
                pd = xp.argmax(pd, axis=1)
            check_labels(_host(label), classes, self.name)
            lab = _host(label).astype(numpy.int64, copy=False).reshape(-1)
            p = to_host(pd).astype(numpy.int64, copy=False).reshape(-1)
            if p.size != lab.size:
                raise ValueError(f'{self.name}: label shape {tuple(_host(label).shape)} does '
                                 f'not match prediction shape {tuple(_device(pred)[0].shape)}')
            n = int(max(p.max(initial=0), lab.max(initial=0))) + 1
            if n > self.k:
                self._grow(n)
            bcm = numpy.bincount(p * self.k + lab, minlength=self.k * self.k)
            bcm = bcm.reshape(self.k, self.k)
            self.lcm += bcm
            self.gcm += bcm
        self.num_inst += 1
        self.global_num_inst += 1

    def reset(self):
        self.global_num_inst = 0
        self.global_sum_metric = 0.0
        self.gcm = numpy.zeros((self.k, self.k))
        self.reset_local()

    def reset_local(self):
        self.num_inst = 0
        self.sum_metric = 0.0
        self.lcm = numpy.zeros((self.k, self.k))

    def get(self):
        if self.num_inst == 0:
            return self.name, float('nan')
        return self.name, self._calc(self.lcm)

    def get_global(self):
        if self.global_num_inst == 0:
            return self.name, float('nan')
        return self.name, self._calc(self.gcm)

    def reduction_state(self):
        """``[k, num_inst, the k x k local confusion counts]`` (k may differ by process)."""
        return numpy.concatenate([[self.k, self.num_inst], self.lcm.reshape(-1)])

    def merged(self, states):
        k = max(int(s[0]) for s in states)
        lcm = numpy.zeros((k, k))
        num_inst = 0
        for s in states:
            n = int(s[0])
            lcm[:n, :n] += s[2:].reshape(n, n)
            num_inst += int(s[1])
        out = copy.copy(self)
        out.k, out.lcm, out.num_inst = k, lcm, num_inst
        return out

    def _extra_state(self):
        return {'lcm': self.lcm.tolist(), 'gcm': self.gcm.tolist()}

    def _load_extra_state(self, state):
        self.lcm = numpy.array(state['lcm'], dtype=numpy.float64)
        self.gcm = numpy.array(state['gcm'], dtype=numpy.float64)
        self.k = self.lcm.shape[0]


@register
class Perplexity(EvalMetric):
    """Perplexity ``exp(-mean(log p(label)))`` of predicted probabilities.

    Args:
        ignore_label: label value whose positions are not counted (None: count all).
        axis: the class axis of the predictions (default -1).

    Example::

        ppl = Perplexity(ignore_label=None)
        ppl.update(nd.array([0, 1, 1]), nd.array([[.3, .7], [0, 1.], [.4, .6]]))
        ppl.get()      # ('perplexity', 1.7710976...)
    """

    def __init__(self, ignore_label, axis=-1, name='perplexity', output_names=None,
                 label_names=None):
        super().__init__(name, ignore_label=ignore_label, axis=axis, output_names=output_names,
                         label_names=label_names, has_global_stats=True)
        self.ignore_label = ignore_label
        self.axis = axis

    @_on_preds_device
    def update(self, labels, preds):
        loss, num = 0.0, 0
        for label, pred in _pairs(labels, preds, self.name, flush=False):
            if _on_device(_device(pred)[1]):
                _pick_log_sum_on_device(self, pred, label, self.axis, 0.0, 1e-10,
                                        self.ignore_label)
                continue
            flush_device_checks()
            probs, lab = _pick_host(pred, label, self.axis, self.name, self.ignore_label)
            if self.ignore_label is not None:
                keep = lab != self.ignore_label
                probs = probs[keep]
            loss -= float(numpy.log(numpy.maximum(1e-10, probs)).sum())
            num += probs.size
        self._accumulate(loss, num)

    def get(self):
        if self.num_inst == 0:
            return self.name, float('nan')
        return self.name, math.exp(self.sum_metric / self.num_inst)

    def get_global(self):
        if self.global_num_inst == 0:
            return self.name, float('nan')
        return self.name, math.exp(self.global_sum_metric / self.global_num_inst)


@_alias('ce')
class CrossEntropy(EvalMetric):
    """Cross-entropy ``-log(p[label] + eps)`` of predicted probabilities, per sample.

    Args:
        eps: added to the probability before the log (default 1e-12).
    """

    def __init__(self, eps=1e-12, name='cross-entropy', output_names=None, label_names=None):
        super().__init__(name, eps=eps, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self.eps = eps

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name, flush=False):
            if _on_device(_device(pred)[1]):
                _pick_log_sum_on_device(self, pred, label, -1, self.eps, -numpy.inf, None)
                continue
            flush_device_checks()
            probs, _ = _pick_host(pred, label, -1, self.name)
            self._accumulate(float(-numpy.log(probs + self.eps).sum()), probs.size)


@_alias('nll_loss')
class NegativeLogLikelihood(CrossEntropy):
    """Negative log-likelihood ``-log(p[label] + eps)`` per sample (same numbers as
    :class:`CrossEntropy`, Gluon's name ``'nll-loss'``)."""

    def __init__(self, eps=1e-12, name='nll-loss', output_names=None, label_names=None):
        super().__init__(eps=eps, name=name, output_names=output_names,
                         label_names=label_names)


def _pick_log_sum_on_device(metric, pred, label, axis, eps, floor, ignore_label):
    """Add ``sum(-log(max(p[label], floor) + eps))`` over the rows whose label is not
    ``ignore_label``, and their number, to ``metric``'s device accumulator (the
    probability-based metrics' update on a device: one fused kernel)."""
    from ..backend.kernels.checks import LABEL_DTYPES
    from ..backend.kernels.metrics import pick_log_sum
    name = metric.name
    pd, xp = _device(pred)
    p2 = _rows(pd, xp, axis, name)
    lab = _device_label(label, pd, xp).reshape(-1)
    m, c = p2.shape
    if lab.size != m:
        raise ValueError(f'{name}: label shape {tuple(_device(label)[0].shape)} does not '
                         f'match prediction shape {tuple(pd.shape)}: expected {m} labels, '
                         f'one per row of {c} class scores')
    ctx = context_of(pd)
    if _kernels.fused(xp, p2.dtype) and lab.dtype in LABEL_DTYPES:
        pick_log_sum(xp, xp.ascontiguousarray(p2), lab, metric._device_accumulator(ctx),
                     _label_flag(ctx, name, c), eps, floor, ignore_label)
        return
    check_labels(lab, c, name, ignore_label)
    v = lab.astype(numpy.float64)
    keep = v == v if ignore_label is None else v != ignore_label
    idx = xp.clip(v, 0, c - 1).astype(numpy.int64)
    probs = p2[xp.arange(m), idx].astype(numpy.float64)
    terms = -xp.log(xp.maximum(probs, floor) + eps)
    metric._add_device(ctx, xp.where(keep, terms, 0).sum(), keep.sum(dtype=numpy.float64))
