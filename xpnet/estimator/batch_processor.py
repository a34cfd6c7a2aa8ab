"""BatchProcessor: how the Estimator computes one batch (the seam between "compute a batch"
and "apply the update", which ``GradientUpdateHandler`` does at ``batch_end``).

Override ``fit_batch`` / ``evaluate_batch`` for custom models (several inputs, extra
losses) and pass the instance as ``Estimator(..., batch_processor=...)``.

Example::

    class TwoInputs(BatchProcessor):
        def fit_batch(self, estimator, train_batch, batch_axis=0):
            a, b, label = [split_and_load(x, estimator.context, batch_axis) for x in train_batch]
            with autograd.record():
                pred = [estimator.net(x, y) for x, y in zip(a, b)]
                loss = [estimator.loss(p, l) for p, l in zip(pred, label)]
            autograd.backward(loss)
            return a, label, pred, loss
"""
from .. import autograd
from ..backend import run_on
from ..layers.sync_batchnorm import SyncBatchNorm
from ..ndarray import NDArray
from ..parallel import parallel_apply

__all__ = ['BatchProcessor']


def _describe(obj):
    shape = getattr(obj, 'shape', None)
    return f'{type(obj).__name__} of shape {tuple(shape)}' if shape is not None \
        else type(obj).__name__


class BatchProcessor:
    """Computes a batch for the Estimator: splits it across ``estimator.context``, runs the
    network and the loss, and (for training) the backward pass."""

    def _get_data_and_label(self, batch, ctx, batch_axis=0, argument='train_data'):
        from ..utils import split_and_load
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            length = f' of length {len(batch)}' if isinstance(batch, (list, tuple)) else ''
            raise ValueError(
                f'{argument} must yield (data, label) pairs, but yielded a '
                f'{_describe(batch)}{length}; wrap arrays in a DataLoader, e.g. '
                'DataLoader(ArrayDataset(data, label), batch_size=32)')
        data = split_and_load(batch[0], ctx_list=ctx, batch_axis=batch_axis)
        label = split_and_load(batch[1], ctx_list=ctx, batch_axis=batch_axis)
        return data, label

    def evaluate_batch(self, estimator, val_batch, batch_axis=0):
        """Evaluate ``estimator.val_net`` on one validation batch.

        Returns:
            ``(data, label, pred, loss)``: lists with one NDArray per device.
        """
        data, label = self._get_data_and_label(val_batch, estimator.context, batch_axis,
                                               'val_data')
        # each device's work runs with that device current (CuPy's kernels go there)
        pred = [run_on(x.context, estimator.val_net, x) for x in data]
        loss = [run_on(x.context, _apply_loss, estimator.val_loss, y_hat, y)
                for x, y_hat, y in zip(data, pred, label)]
        return data, label, pred, loss

    def fit_batch(self, estimator, train_batch, batch_axis=0):
        """Forward and backward on one training batch (the update is applied later by
        ``GradientUpdateHandler``).

        Args:
            estimator: the Estimator.
            train_batch: a ``(data, label)`` batch from the training loader.
            batch_axis: the axis along which the batch is split across devices.

        Returns:
            ``(data, label, pred, loss)``: the data and label shards (``split_and_load``),
            the prediction and the per-sample loss on each device.
        """
        data, label = self._get_data_and_label(train_batch, estimator.context, batch_axis)
        if len(data) > 1 and _has_sync_layers(estimator.net):
            # SyncBatchNorm makes the devices meet inside forward and backward: run each
            # device's pass in its own thread. (Otherwise stay sequential: the order of
            # random draws, e.g. dropout masks, then stays reproducible.)
            def device_pass(x, y):
                with autograd.record():
                    y_hat = estimator.net(x)
                    l = _apply_loss(estimator.loss, y_hat, y)
                _backward(estimator, l)
                return y_hat, l
            outs = parallel_apply(device_pass, list(zip(data, label)),
                                  contexts=[x.context for x in data])
            return data, label, [o[0] for o in outs], [o[1] for o in outs]
        with autograd.record():       # each device's forward and loss with it current
            pred = [run_on(x.context, estimator.net, x) for x in data]
            loss = [run_on(x.context, _apply_loss, estimator.loss, y_hat, y)
                    for x, y_hat, y in zip(data, pred, label)]
        _backward(estimator, loss)    # every node's backward runs on its own device
        return data, label, pred, loss


def _backward(estimator, loss):
    """Backward of ``loss`` (an NDArray or a list), scaled by the trainer's AMP loss scaler
    when it has one (``amp.init_trainer``, ``Estimator(amp=True)``)."""
    scaler = getattr(estimator.trainer, '_amp_loss_scaler', None)
    if scaler is None:
        autograd.backward(loss)
        return
    from .. import amp
    with amp.scale_loss(loss, estimator.trainer) as scaled:
        autograd.backward(scaled)


def _has_sync_layers(net):
    """True if ``net`` contains a SyncBatchNorm (cached on the net)."""
    cached = getattr(net, '_xpnet_has_sync', None)
    if cached is None:
        found = []
        net.apply(lambda b: found.append(isinstance(b, SyncBatchNorm)))
        cached = any(found)
        object.__setattr__(net, '_xpnet_has_sync', cached)
    return cached


def _apply_loss(loss_fn, pred, label):
    """``loss_fn(pred, label)`` with a clear error when the label cannot match the prediction."""
    # A label matches a prediction when it has as many values (dense labels, regression)
    # or one per row of the last axis (class indices); either way its size divides the
    # prediction's. Anything else is a data/model mismatch, reported with both shapes.
    if isinstance(pred, NDArray) and isinstance(label, NDArray) and \
            (label.size == 0 or pred.size % label.size):
        raise ValueError(
            f'{type(loss_fn).__name__}: the label of shape {label.shape} cannot match the '
            f'prediction of shape {pred.shape} (a label needs one value per prediction, or '
            'one class index per row)')
    try:
        return loss_fn(pred, label)
    except (ValueError, TypeError, IndexError) as err:
        if isinstance(pred, NDArray) and isinstance(label, NDArray):
            raise ValueError(
                f'{type(loss_fn).__name__} failed on a prediction of shape {pred.shape} and '
                f'a label of shape {label.shape}: {err}') from err
        raise
