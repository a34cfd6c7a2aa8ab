"""Metrics of real-valued predictions: MAE, MSE, RMSE and Pearson correlation."""
import copy
import math

import numpy

from ..backend import context_of
from ..backend.checks import flush_device_checks
from ._inputs import _device, _host, _like, _on_device, _pairs, _on_preds_device
from .base import EvalMetric, _alias, _host_vector, register

__all__ = ['MAE', 'MSE', 'RMSE', 'PearsonCorrelation']


# ---- regression ---------------------------------------------------------------------------------

def _regression_pair(label, pred, name):
    return _regression_difference(numpy, _host(label), _host(pred), name)


def _regression_difference(xp, lab, p, name):
    """``label - prediction`` in float64 (1-D arrays as columns), on the arrays' device;
    ``ValueError`` naming both shapes when they do not fit."""
    shape_l, shape_p = tuple(lab.shape), tuple(p.shape)
    if lab.ndim == 1:
        lab = lab.reshape(-1, 1)
    if p.ndim == 1:
        p = p.reshape(-1, 1)
    if lab.shape[:1] != p.shape[:1]:
        raise ValueError(f'{name}: label shape {shape_l} does not match prediction shape '
                         f'{shape_p} (different batch sizes)')
    try:
        xp.broadcast_shapes(lab.shape, p.shape)
    except ValueError:
        raise ValueError(f'{name}: label shape {shape_l} does not broadcast with prediction '
                         f'shape {shape_p}') from None
    return lab.astype(numpy.float64) - p.astype(numpy.float64)


class _BatchError(EvalMetric):
    """A per-batch error of ``label - prediction`` (``_error``), averaged over the updates
    (each batch counts once, as in Gluon)."""

    def __init__(self, name, output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)

    @staticmethod
    def _error(d):
        raise NotImplementedError

    @staticmethod
    def _device_error(xp, d):
        """:meth:`_error` as a device 0-d array."""
        raise NotImplementedError

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name, flush=False):
            pd, xp = _device(pred)
            if _on_device(xp):           # accumulated on the device: nothing read back
                d = _regression_difference(xp, _like(label, pd, xp), pd, self.name)
                self._add_device(context_of(pd), self._device_error(xp, d), 1)
                continue
            flush_device_checks()
            self._accumulate(self._error(_regression_pair(label, pred, self.name)), 1)


@register
class MAE(_BatchError):
    """Mean absolute error, averaged over the updates (each batch counts once)."""

    def __init__(self, name='mae', output_names=None, label_names=None):
        super().__init__(name, output_names, label_names)

    @staticmethod
    def _error(d):
        return float(numpy.abs(d).mean())

    @staticmethod
    def _device_error(xp, d):
        return xp.abs(d).mean()


@register
class MSE(_BatchError):
    """Mean squared error, averaged over the updates (each batch counts once)."""

    def __init__(self, name='mse', output_names=None, label_names=None):
        super().__init__(name, output_names, label_names)

    @staticmethod
    def _error(d):
        return float(numpy.square(d).mean())

    @staticmethod
    def _device_error(xp, d):
        return xp.square(d).mean()


@register
class RMSE(_BatchError):
    """Root mean squared error of each batch, averaged over the updates."""

    def __init__(self, name='rmse', output_names=None, label_names=None):
        super().__init__(name, output_names, label_names)

    @staticmethod
    def _error(d):
        return math.sqrt(float(numpy.square(d).mean()))

    @staticmethod
    def _device_error(xp, d):
        return xp.sqrt(xp.square(d).mean())


@_alias('pearsonr')
class PearsonCorrelation(EvalMetric):
    """Pearson correlation between labels and predictions.

    Args:
        average: ``'macro'`` (default: mean of the per-batch correlations) or ``'micro'``
            (one correlation of all the data, accumulated exactly batch by batch).
    """

    def __init__(self, name='pearsonr', output_names=None, label_names=None, average='macro'):
        if average not in ('macro', 'micro'):
            raise ValueError(f"PearsonCorrelation: average must be 'macro' or 'micro', got "
                             f'{average!r}')
        self.average = average
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True, average=average)

    _ZERO = (0, 0.0, 0.0, 0.0, 0.0, 0.0)      # n, mean_l, mean_p, m2_l, m2_p, c

    def reset(self):
        super().reset()
        self._local = self._glob = self._ZERO

    def reset_local(self):
        super().reset_local()
        self._local = self._ZERO

    @staticmethod
    def _merge(s, lab, p):
        """Combine pooled statistics with one batch (Chan et al.'s parallel update)."""
        n, ml, mp, m2l, m2p, c = s
        nb = lab.size
        mlb, mpb = lab.mean(), p.mean()
        dl, dp = lab - mlb, p - mpb
        tot = n + nb
        f = n * nb / tot
        el, ep = mlb - ml, mpb - mp
        return (tot, ml + el * nb / tot, mp + ep * nb / tot,
                m2l + float(dl @ dl) + el * el * f, m2p + float(dp @ dp) + ep * ep * f,
                c + float(dl @ dp) + el * ep * f)

    @staticmethod
    def _combine(a, b):
        """Pooled statistics of two disjoint parts of the data (Chan et al.)."""
        na, mla, mpa, m2la, m2pa, ca = a
        nb, mlb, mpb, m2lb, m2pb, cb = b
        if nb == 0:
            return a
        if na == 0:
            return b
        tot = na + nb
        f = na * nb / tot
        el, ep = mlb - mla, mpb - mpa
        return (tot, mla + el * nb / tot, mpa + ep * nb / tot, m2la + m2lb + el * el * f,
                m2pa + m2pb + ep * ep * f, ca + cb + el * ep * f)

    @staticmethod
    def _pooled(s):
        n, _, _, m2l, m2p, c = s
        denom = math.sqrt(m2l * m2p)
        return c / denom if n > 1 and denom > 0 else float('nan')

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            lab, p = _host(label), _host(pred)
            if lab.shape != p.shape:
                raise ValueError(f'{self.name}: label shape {lab.shape} does not match '
                                 f'prediction shape {p.shape}')
            lab = lab.ravel().astype(numpy.float64)
            p = p.ravel().astype(numpy.float64)
            if self.average == 'macro':
                dl, dp = lab - lab.mean(), p - p.mean()
                denom = math.sqrt(float(dl @ dl) * float(dp @ dp))
                self._accumulate(float(dl @ dp) / denom if denom > 0 else float('nan'), 1)
            else:
                self.num_inst += 1
                self.global_num_inst += 1
                self._local = self._merge(self._local, lab, p)
                self._glob = self._merge(self._glob, lab, p)

    def get(self):
        if self.average == 'macro' or self.num_inst == 0:
            return super().get()
        return self.name, self._pooled(self._local)

    def get_global(self):
        if self.average == 'macro' or self.global_num_inst == 0:
            return super().get_global()
        return self.name, self._pooled(self._glob)

    def reduction_state(self):
        if self.average == 'macro':
            return super().reduction_state()
        return _host_vector([self.num_inst, *self._local])

    def merged(self, states):
        if self.average == 'macro':
            return super().merged(states)
        pooled, num_inst = self._ZERO, 0
        for s in states:        # in rank order: every process gets the same bits
            num_inst += int(s[0])
            pooled = self._combine(pooled, tuple(float(v) for v in s[1:]))
        out = copy.copy(self)
        out.num_inst, out._local = num_inst, pooled
        return out

    def _extra_state(self):
        return {'pooled_local': list(self._local), 'pooled_global': list(self._glob)}

    def _load_extra_state(self, state):
        if 'pooled_local' in state:
            self._local = tuple(state['pooled_local'])
            self._glob = tuple(state['pooled_global'])
