"""The loss-averaging metric and metrics from user functions (:class:`CustomMetric`,
Gluon's ``metric.np``)."""
import numpy

from ..backend import context_of, get_array_module, is_array
from ..backend import kernels as _kernels
from ..backend.checks import flush_device_checks
from ..ndarray import NDArray
from ._inputs import _as_list, _host, _on_preds_device
from .base import EvalMetric, register

__all__ = ['Loss', 'CustomMetric']


# ---- losses and custom functions ------------------------------------------------------------

@register
class Loss(EvalMetric):
    """Average of loss values: ``update(_, losses)`` ignores the labels.

    Example::

        m = Loss()
        m.update(0, [loss_fn(net(x), y)])       # one array per device
        m.get()                                 # ('loss', mean of all loss values)
    """

    def __init__(self, name='loss', output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)

    @_on_preds_device
    def update(self, _, preds):
        for pred in _as_list(preds):
            data = pred._data if isinstance(pred, NDArray) else pred
            if is_array(data) and not isinstance(data, numpy.ndarray):
                self._update_on_device(data)       # accumulated there: nothing read back
                continue
            flush_device_checks()   # a read-back: failed device checks surface here
            if isinstance(pred, NDArray):
                total, size = float(pred.xp.sum(pred._data)), pred.size
            elif is_array(pred):
                total, size = float(get_array_module(pred).sum(pred)), pred.size
            else:
                arr = numpy.asarray(pred, dtype=numpy.float64)
                total, size = float(arr.sum()), arr.size
            self._accumulate(total, size)

    def _update_on_device(self, data):
        from ..backend.kernels.metrics import sum_values
        xp = get_array_module(data)
        ctx = context_of(data)
        if _kernels.fused(xp, data.dtype):
            sum_values(xp, data, self._device_accumulator(ctx))
        else:
            self._add_device(ctx, data.sum(dtype=numpy.float64), data.size)


@register
class CustomMetric(EvalMetric):
    """A metric from ``feval(label, pred)`` on host NumPy arrays, returning either a value
    (averaged over calls) or ``(sum_metric, num_inst)``.

    Args:
        feval: the function.
        name: display name (default: the function's name, ``custom(<lambda>)`` for lambdas).
        allow_extra_outputs: allow more predictions than labels (extra ones are ignored).
    """

    def __init__(self, feval, name=None, allow_extra_outputs=False, output_names=None,
                 label_names=None):
        if name is None:
            name = getattr(feval, '__name__', 'custom')
            if '<' in name:
                name = f'custom({name})'
        super().__init__(name, feval=feval, allow_extra_outputs=allow_extra_outputs,
                         output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self._feval = feval
        self._allow_extra_outputs = allow_extra_outputs

    @_on_preds_device
    def update(self, labels, preds):
        flush_device_checks()
        labels, preds = _as_list(labels), _as_list(preds)
        if not self._allow_extra_outputs and len(labels) != len(preds):
            raise ValueError(f'{self.name}: got {len(labels)} label array(s) but {len(preds)} '
                             'prediction array(s)')
        for label, pred in zip(labels, preds):
            r = self._feval(_host(label), _host(pred))
            if isinstance(r, tuple):
                self._accumulate(r[0], r[1])
            else:
                self._accumulate(r, 1)

    def get_config(self):
        raise NotImplementedError('CustomMetric cannot be serialized')


def np(numpy_feval, name=None, allow_extra_outputs=False):
    """A :class:`CustomMetric` from a function of host NumPy arrays (Gluon's ``metric.np``).

    Not in ``__all__``, so that ``from xpnet.metric import *`` cannot shadow NumPy's ``np``.
    """
    def feval(label, pred):
        return numpy_feval(label, pred)
    feval.__name__ = numpy_feval.__name__
    return CustomMetric(feval, name, allow_extra_outputs)
