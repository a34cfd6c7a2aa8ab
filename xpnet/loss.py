"""Loss functions with Gluon 1.9's names, arguments and numbers (``xpnet.loss``).

Every loss is a :class:`~xpnet.layers.HybridBlock` called as ``loss(pred, label, ...)``
and returns one value per sample, shape ``(batch,)`` (except :class:`PoissonNLLLoss`, which
returns Gluon 1.9.1's mean over the batch): the elementwise loss, multiplied by
``sample_weight`` (broadcast) and by the scalar ``weight``, averaged over every axis but
``batch_axis`` (summed for :class:`KLDivLoss` and :class:`TripletLoss`, as in Gluon).

Labels may be int or float NDArrays (or host arrays); where Gluon reshapes the label to
the prediction's shape, so does xpnet (a label of the same size but another shape, e.g.
``(N, 1)`` for ``(N,)``), and the label is cast to the prediction's dtype so float32 stays
float32. A label whose size cannot match raises ``ValueError`` naming both shapes.

Where xpnet differs from MXNet 1.9.1 on purpose:

- :class:`CosineEmbeddingLoss` returns ``(batch,)`` too (MXNet: ``(batch, 1)``).
  :class:`PoissonNLLLoss` returns Gluon's single mean, shape ``(1,)``.
- ``PoissonNLLLoss(compute_full=True)`` adds the Stirling term only where ``target > 1``
  and gives 0 elsewhere; MXNet computes ``0 * log(0)`` there and returns NaN.
- A ``sample_weight`` whose broadcast would *enlarge* the loss (e.g. ``(N, 1)`` against a
  loss of shape ``(N,)``) raises ``ValueError``; MXNet silently averages an ``N x N``
  product. ``SoftmaxCrossEntropyLoss`` also accepts a ``sample_weight`` of the label's
  shape (the documented intent), applied per position.

Example::

    from xpnet import loss as gloss
    L = gloss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        l = L(net(x), y)          # shape (batch,)
    l.backward()
"""
import numbers

import numpy as np

from . import ops
from .backend import to_device
from .backend.checks import check_labels
from .layers.block import HybridBlock
from .ndarray import NDArray, _wrap
from .ops._amp import target as _amp_target

__all__ = ['Loss', 'L2Loss', 'L1Loss', 'SigmoidBinaryCrossEntropyLoss', 'SigmoidBCELoss',
           'SoftmaxCrossEntropyLoss', 'SoftmaxCELoss', 'KLDivLoss', 'HuberLoss', 'HingeLoss',
           'SquaredHingeLoss', 'LogisticLoss', 'TripletLoss', 'PoissonNLLLoss',
           'CosineEmbeddingLoss', 'CTCLoss', 'SDMLLoss']


# ---- helpers ------------------------------------------------------------------------------------

def _as_nd(x, like, name, arg):
    """``x`` (NDArray, host/device array, list or number) as an NDArray on ``like``'s device;
    floats take ``like``'s dtype."""
    if isinstance(x, NDArray):
        if x._ctx != like._ctx:
            raise ValueError(f'{name}: {arg} is on {x._ctx} but the prediction is on '
                             f'{like._ctx}; move it with .as_in_context()')
        return x
    if isinstance(x, (numbers.Number, np.generic)):
        x = np.asarray(x)
    try:
        kind = getattr(x, 'dtype', None)
        kind = kind.kind if kind is not None else np.asarray(x).dtype.kind
    except Exception:
        raise TypeError(f'{name}: {arg} must be an NDArray or an array, got '
                        f'{type(x).__name__}') from None
    dtype = like.dtype if kind == 'f' else None
    return _wrap(to_device(x, like._ctx, dtype=dtype), like._ctx)


def _as_float(pred):
    return pred if pred.dtype.kind == 'f' else pred.astype(np.float32)


def _cast(x, dtype):
    return x if x.dtype == dtype else x.astype(dtype)


def _float32(x, low):
    """``x`` in float32 when it is an NDArray of AMP's low-precision type."""
    return x.astype(np.float32) if isinstance(x, NDArray) and x.dtype == low else x


def _reshape_to(x, pred, name, arg='label', ref='prediction'):
    """Gluon's ``reshape_like(x, pred)`` with a clear error, then cast to pred's dtype."""
    if x.shape != pred.shape:
        if x.size != pred.size:
            raise ValueError(f'{name}: {arg} shape {x.shape} does not match {ref} shape '
                             f'{pred.shape} ({x.size} vs {pred.size} elements)')
        x = x.reshape(pred.shape)
    return _cast(x, pred.dtype)


def _broadcast_shape(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def _apply_sample_weight(loss, sample_weight, name):
    sw = _cast(_as_nd(sample_weight, loss, name, 'sample_weight'), loss.dtype)
    if _broadcast_shape(loss.shape, sw.shape) != loss.shape:
        raise ValueError(f'{name}: sample_weight of shape {sw.shape} does not broadcast to the '
                         f'elementwise loss of shape {loss.shape} (e.g. use shape '
                         f'{loss.shape[:1] + (1,) * (loss.ndim - 1)} for one weight per '
                         'sample)')
    return loss * sw


def _weight_class_axis(loss, sample_weight, axis, b, name):
    """Apply ``sample_weight`` to a loss already reduced over ``axis`` (``b``: its batch axis).

    Gluon keeps the reduced axis as size 1 and broadcasts the weight against that (so
    ``(N, 1)`` weighs each sample of an ``(N, C)`` prediction); a weight of the reduced
    loss's own shape (the label's shape) is applied position by position.
    Returns the weighted loss and its batch axis.
    """
    sw = _cast(_as_nd(sample_weight, loss, name, 'sample_weight'), loss.dtype)
    keep = loss.shape[:axis] + (1,) + loss.shape[axis:]
    if _broadcast_shape(keep, sw.shape) == keep:
        return ops.expand_dims(loss, axis) * sw, (b + 1 if b >= axis else b)
    if _broadcast_shape(loss.shape, sw.shape) == loss.shape:
        return loss * sw, b
    raise ValueError(f'{name}: sample_weight of shape {sw.shape} broadcasts neither to '
                     f'{keep} nor to {loss.shape}')


def _norm_batch_axis(batch_axis, ndim, name):
    if not -ndim <= batch_axis < ndim:
        raise ValueError(f'{name}: batch_axis {batch_axis} is out of range for a loss of '
                         f'{ndim} dimension(s)')
    return batch_axis % ndim


def _batch_reduce(loss, batch_axis, name, how='mean'):
    """Mean (or sum) over every axis but ``batch_axis``; no op when there is none."""
    b = _norm_batch_axis(batch_axis, loss.ndim, name)
    axes = tuple(i for i in range(loss.ndim) if i != b)
    if not axes:
        return loss
    return ops.mean(loss, axis=axes) if how == 'mean' else ops.sum(loss, axis=axes)


def _check_weight(weight, name):
    if weight is not None and (not isinstance(weight, (numbers.Number, np.generic))
                               or isinstance(weight, bool)):
        raise TypeError(f'{name}: weight must be a number or None, got {weight!r}')
    return None if weight is None else (weight.item() if isinstance(weight, np.generic)
                                        else weight)


def _apply_weighting(F, loss, weight=None, sample_weight=None):
    """Gluon's helper for custom losses: ``loss * sample_weight * weight``."""
    if sample_weight is not None:
        loss = loss * sample_weight
    if weight is not None:
        if not isinstance(weight, numbers.Number):
            raise TypeError(f'weight must be a number, got {weight!r}')
        loss = loss * weight
    return loss


def _reshape_like(F, x, y):
    """Gluon's helper for custom losses: ``x`` reshaped to ``y``'s shape."""
    return x.reshape(y.shape)


# ---- base ---------------------------------------------------------------------------------------

class Loss(HybridBlock):
    """Base class of losses.

    Subclasses implement ``forward(pred, label, ...)`` (or Gluon 1's
    ``hybrid_forward(F, pred, label, ...)``) and return one value per sample.

    Args:
        weight: global scalar weight of the loss (None: no scaling).
        batch_axis: the axis of the mini-batch.
    """

    def __init__(self, weight=None, batch_axis=0, **kwargs):
        super().__init__(**kwargs)
        self._weight = _check_weight(weight, type(self).__name__)
        if not isinstance(batch_axis, numbers.Integral):
            raise TypeError(f'{type(self).__name__}: batch_axis must be an int, '
                            f'got {batch_axis!r}')
        self._batch_axis = int(batch_axis)

    def __repr__(self):
        return f'{type(self).__name__}(batch_axis={self._batch_axis}, w={self._weight})'

    def __call__(self, *args, **kwargs):
        low = _amp_target()
        if low is not None:     # under xpnet.amp every loss computes in float32
            args = tuple(_float32(a, low) for a in args)
        return super().__call__(*args, **kwargs)

    def _finish(self, loss, sample_weight, how='mean'):
        """Weighting and the reduction to ``(batch,)`` shared by the elementwise losses."""
        name = type(self).__name__
        if sample_weight is not None:
            loss = _apply_sample_weight(loss, sample_weight, name)
        if self._weight is not None:
            loss = loss * self._weight
        return _batch_reduce(loss, self._batch_axis, name, how)

    def _inputs(self, pred, label, arg='label', ref='prediction'):
        name = type(self).__name__
        if not isinstance(pred, NDArray):
            raise TypeError(f'{name}: {ref} must be an NDArray or a NumPy array, '
                            f'got {type(pred).__name__}')
        pred = _as_float(pred)
        label = _reshape_to(_as_nd(label, pred, name, arg), pred, name, arg, ref)
        return pred, label


# ---- regression ---------------------------------------------------------------------------------

class L2Loss(Loss):
    """Half the squared error: ``0.5 * (label - pred)**2``, averaged per sample.

    Args:
        weight: global scalar weight (default 1; the 1/2 is applied on top).
        batch_axis: the mini-batch axis.

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, weight=1., batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def forward(self, pred, label, sample_weight=None):
        pred, label = self._inputs(pred, label)
        loss = ops.square(label - pred)
        if sample_weight is not None:
            loss = _apply_sample_weight(loss, sample_weight, 'L2Loss')
        scale = (1.0 if self._weight is None else self._weight) / 2
        return _batch_reduce(loss * scale, self._batch_axis, 'L2Loss')


class L1Loss(Loss):
    """Absolute error ``|label - pred|``, averaged per sample.

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def forward(self, pred, label, sample_weight=None):
        pred, label = self._inputs(pred, label)
        return self._finish(ops.abs(label - pred), sample_weight)


class HuberLoss(Loss):
    """Smoothed L1: ``|d| - rho/2`` if ``|d| > rho`` else ``d**2 / (2*rho)``, ``d = label - pred``.

    Args:
        rho: threshold between the quadratic and the linear part (default 1).

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, rho=1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        if not rho > 0:
            raise ValueError(f'HuberLoss: rho must be positive, got {rho}')
        self._rho = rho

    def forward(self, pred, label, sample_weight=None):
        pred, label = self._inputs(pred, label)
        rho = self._rho
        a = ops.abs(label - pred)
        loss = ops.where(a > rho, a - 0.5 * rho, ops.square(a) * (0.5 / rho))
        return self._finish(loss, sample_weight)


# ---- classification -----------------------------------------------------------------------------

class SoftmaxCrossEntropyLoss(Loss):
    """Softmax cross-entropy (alias ``SoftmaxCELoss``), fused into one op.

    Sparse labels (default): ``-log_softmax(pred, axis)[label]`` with ``label`` the class
    index (int or float; shape of ``pred`` without ``axis``, or with ``axis`` of size 1).
    A label that is not a whole number in ``[0, classes)`` (negative, too large,
    fractional, NaN) raises ``ValueError`` (MXNet clips it silently); on a device the
    error surfaces at the next read-back (see :mod:`xpnet.backend.checks`).
    Dense labels (``sparse_label=False``): ``-sum(label * log_softmax(pred), axis)``.

    Args:
        axis: the class axis (default -1).
        sparse_label: labels are class indices (True) or distributions (False).
        from_logits: ``pred`` is already a log-probability (log_softmax is skipped).
        weight, batch_axis: as in :class:`Loss`.

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``; ``sample_weight``
    broadcasts against the loss with the class axis kept (e.g. ``(N, 1)``) or has the
    label's shape.

    Example::

        L = SoftmaxCrossEntropyLoss()
        L(nd.array([[2., 0.5, -1.]]), nd.array([0]))   # [0.2413]
    """

    def __init__(self, axis=-1, sparse_label=True, from_logits=False, weight=None,
                 batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._axis = axis
        self._sparse_label = sparse_label
        self._from_logits = from_logits

    def forward(self, pred, label, sample_weight=None):
        name = 'SoftmaxCrossEntropyLoss'
        if not isinstance(pred, NDArray):
            raise TypeError(f'{name}: pred must be an NDArray or a NumPy array, '
                            f'got {type(pred).__name__}')
        pred = _as_float(pred)
        ndim = pred.ndim
        if not -ndim <= self._axis < ndim:
            raise ValueError(f'{name}: axis {self._axis} is out of range for a prediction of '
                             f'shape {pred.shape}')
        axis = self._axis % ndim
        b = _norm_batch_axis(self._batch_axis, ndim, name)
        if b == axis:
            raise ValueError(f'{name}: batch_axis {self._batch_axis} is the class axis '
                             f'{self._axis} of the prediction of shape {pred.shape}')
        label = _as_nd(label, pred, name, 'label')
        if self._sparse_label:
            reduced = pred.shape[:axis] + pred.shape[axis + 1:]
            if label.shape != reduced and \
                    label.shape != pred.shape[:axis] + (1,) + pred.shape[axis + 1:]:
                if label.size != int(np.prod(reduced)):
                    raise ValueError(f'{name}: label shape {label.shape} does not match '
                                     f'prediction shape {pred.shape} (expected {reduced}: '
                                     f'the prediction without the class axis {axis})')
                label = label.reshape(reduced)
            check_labels(label._data, pred.shape[axis], name)   # no device sync
        else:
            label = _reshape_to(label, pred, name)
        loss = ops.softmax_cross_entropy(pred, label, axis, self._sparse_label,
                                         self._from_logits)
        # ``loss`` has pred's shape without the class axis.
        b = b - 1 if b > axis else b
        if sample_weight is not None:
            loss, b = _weight_class_axis(loss, sample_weight, axis, b, name)
        if self._weight is not None:
            loss = loss * self._weight
        return _batch_reduce(loss, b, name)


SoftmaxCELoss = SoftmaxCrossEntropyLoss


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy with a sigmoid (alias ``SigmoidBCELoss``).

    From logits (default): ``max(x, 0) - x*z + log(1 + exp(-|x|))``, computed stably; with
    ``pos_weight`` the positive term is scaled: ``-(pw*z*log(s) + (1-z)*log(1-s))``.
    ``from_sigmoid=True`` takes probabilities: ``-(z*log(p+eps)*pw + (1-z)*log(1-p+eps))``,
    ``eps = 1e-12``.

    Args:
        from_sigmoid: ``pred`` is already a probability.
        weight, batch_axis: as in :class:`Loss`.

    Call: ``loss(pred, label, sample_weight=None, pos_weight=None)`` -> ``(batch,)``;
    ``pos_weight`` broadcasts against ``pred`` (e.g. ``(1, C)``).
    """

    def __init__(self, from_sigmoid=False, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_sigmoid = from_sigmoid

    def forward(self, pred, label, sample_weight=None, pos_weight=None):
        name = 'SigmoidBinaryCrossEntropyLoss'
        pred, label = self._inputs(pred, label)
        if pos_weight is not None:
            pos_weight = _cast(_as_nd(pos_weight, pred, name, 'pos_weight'), pred.dtype)
            if _broadcast_shape(pred.shape, pos_weight.shape) != pred.shape:
                raise ValueError(f'{name}: pos_weight of shape {pos_weight.shape} does not '
                                 f'broadcast to the prediction shape {pred.shape}')
        loss = ops.sigmoid_binary_cross_entropy(pred, label, pos_weight, self._from_sigmoid)
        return self._finish(loss, sample_weight)


SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss


class KLDivLoss(Loss):
    """Kullback-Leibler divergence ``label * (log(label + 1e-12) - pred)``, **summed** per sample.

    Args:
        from_logits: ``pred`` is a log-probability (default True); otherwise
            ``log_softmax(pred, axis)`` is taken first.
        axis: the softmax axis when ``from_logits=False``.
        weight, batch_axis: as in :class:`Loss`.

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, from_logits=True, axis=-1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits = from_logits
        self._axis = axis

    def forward(self, pred, label, sample_weight=None):
        name = 'KLDivLoss'
        if not isinstance(pred, NDArray):
            raise TypeError(f'{name}: pred must be an NDArray or a NumPy array, '
                            f'got {type(pred).__name__}')
        pred = _as_float(pred)
        label = _cast(_as_nd(label, pred, name, 'label'), pred.dtype)
        # Gluon broadcasts here instead of reshaping; a same-size label is reshaped.
        if label.shape != pred.shape:
            if label.size == pred.size:
                label = label.reshape(pred.shape)
            elif _broadcast_shape(label.shape, pred.shape) != pred.shape:
                raise ValueError(f'{name}: label shape {label.shape} does not match '
                                 f'prediction shape {pred.shape}')
        if not self._from_logits:
            pred = ops.log_softmax(pred, self._axis)
        loss = label * (ops.log(label + 1e-12) - pred)
        return self._finish(loss, sample_weight, how='sum')


class HingeLoss(Loss):
    """Hinge loss ``max(0, margin - pred * label)`` with labels -1/1, averaged per sample.

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, margin=1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, pred, label, sample_weight=None):
        pred, label = self._inputs(pred, label)
        return self._finish(ops.relu(self._margin - pred * label), sample_weight)


class SquaredHingeLoss(Loss):
    """Squared hinge loss ``max(0, margin - pred * label)**2``, averaged per sample.

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, margin=1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, pred, label, sample_weight=None):
        pred, label = self._inputs(pred, label)
        return self._finish(ops.square(ops.relu(self._margin - pred * label)), sample_weight)


class LogisticLoss(Loss):
    """Logistic loss ``log(1 + exp(-pred * label))``, averaged per sample.

    Args:
        label_format: ``'signed'`` (labels -1/1, mapped to ``(l + 1) / 2``) or ``'binary'``
            (labels 0/1).

    Call: ``loss(pred, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, weight=None, batch_axis=0, label_format='signed', **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        if label_format not in ('signed', 'binary'):
            raise ValueError(f"LogisticLoss: label_format must be 'signed' or 'binary', got "
                             f'{label_format!r}')
        self._label_format = label_format

    def forward(self, pred, label, sample_weight=None):
        pred, label = self._inputs(pred, label)
        if self._label_format == 'signed':
            label = (label + 1.0) / 2.0
        # relu(x) - x*z + softrelu(-|x|) is exactly the fused sigmoid BCE.
        loss = ops.sigmoid_binary_cross_entropy(pred, label)
        return self._finish(loss, sample_weight)


# ---- embeddings / ranking -----------------------------------------------------------------------

class TripletLoss(Loss):
    """Triplet loss ``max(sum((positive - pred)**2 - (negative - pred)**2) + margin, 0)``,
    summed over the non-batch axes.

    Call: ``loss(pred, positive, negative)`` -> ``(batch,)``.
    """

    def __init__(self, margin=1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, pred, positive, negative):
        pred, positive = self._inputs(pred, positive, 'positive')
        negative = _reshape_to(_as_nd(negative, pred, 'TripletLoss', 'negative'), pred,
                               'TripletLoss', 'negative')
        d = ops.square(positive - pred) - ops.square(negative - pred)
        loss = ops.relu(_batch_reduce(d, self._batch_axis, 'TripletLoss', 'sum')
                        + self._margin)
        return loss * self._weight if self._weight is not None else loss


class CosineEmbeddingLoss(Loss):
    """Cosine embedding loss: ``1 - cos(x1, x2)`` for label 1, ``max(0, cos - margin)`` for -1.

    The cosine similarity is taken over the last axis (``max(|x1||x2|, 1e-12)`` below);
    any other non-batch axes are averaged, so the result is ``(batch,)`` (MXNet returns
    ``(batch, 1)``).

    Call: ``loss(input1, input2, label, sample_weight=None)`` -> ``(batch,)``.
    """

    def __init__(self, weight=None, batch_axis=0, margin=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, input1, input2, label, sample_weight=None):
        name = 'CosineEmbeddingLoss'
        x2, x1 = self._inputs(input2, input1, 'input1', ref='input2')
        if x2.ndim < 2:
            raise ValueError(f'{name}: inputs need a batch axis and a feature axis, got '
                             f'shape {x2.shape}')
        label = _cast(_as_nd(label, x2, name, 'label'), x2.dtype)
        b = _norm_batch_axis(self._batch_axis, x2.ndim - 1, name)
        n = x2.shape[b]
        if label.size != n:
            raise ValueError(f'{name}: label shape {label.shape} must hold one value per '
                             f'sample ({n} along batch_axis {b} of input shape {x2.shape})')
        lshape = [1] * (x2.ndim - 1)
        lshape[b] = n
        label = label.reshape(tuple(lshape))
        dot = ops.sum(x1 * x2, axis=-1)
        norms = ops.norm(x1, axis=-1) * ops.norm(x2, axis=-1)
        cos = dot / ops.maximum(norms, 1e-12)
        loss = (1 - cos) * (label == 1) + ops.relu((label == -1) * (cos - self._margin))
        if sample_weight is not None:
            loss, b = _weight_class_axis(loss, sample_weight, x2.ndim - 1, b, name)
        if self._weight is not None:
            loss = loss * self._weight
        return _batch_reduce(loss, b, name)


class PoissonNLLLoss(Loss):
    """Poisson negative log-likelihood, averaged over the whole batch (as Gluon 1.9.1).

    ``from_logits=True`` (default): ``exp(pred) - target * pred``; otherwise
    ``pred - target * log(pred + epsilon)``. ``compute_full=True`` adds the Stirling
    approximation of ``log(target!)``, ``target*log(target) - target + 0.5*log(2*pi*target)``,
    where ``target > 1`` (0 elsewhere; MXNet returns NaN for a zero target).

    Call: ``loss(pred, target, sample_weight=None, epsilon=1e-08)`` -> shape ``(1,)``: the
    mean of the weighted elementwise loss over every axis, Gluon 1.9.1's ``F.mean(loss)``
    (the only loss that does not return one value per sample; its gradient is that of the
    mean, so ``Trainer.step`` should get ``batch_size=1``).
    """

    def __init__(self, weight=None, from_logits=True, batch_axis=0, compute_full=False,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits = from_logits
        self._compute_full = compute_full

    def forward(self, pred, target, sample_weight=None, epsilon=1e-08):
        pred, target = self._inputs(pred, target, 'target')
        if self._from_logits:
            loss = ops.exp(pred) - target * pred
        else:
            loss = pred - target * ops.log(pred + epsilon)
        if self._compute_full:
            big = target > 1
            # Evaluate the logs only on safe values so that masked entries stay finite.
            t = ops.where(big, target, 2.0)
            stirling = t * ops.log(t) - t + 0.5 * ops.log(2 * np.pi * t)
            loss = loss + stirling * big
        if sample_weight is not None:
            loss = _apply_sample_weight(loss, sample_weight, 'PoissonNLLLoss')
        if self._weight is not None:
            loss = loss * self._weight
        return ops.reshape(ops.mean(loss), (1,))


# ---- sequences and metric learning (Gluon 1.x additions) -----------------------------------------

class CTCLoss(Loss):
    """Connectionist temporal classification loss (Graves et al. 2006), as Gluon 1.9.1's.

    The blank is the *last* class (``C - 1``), so predictions have one more class than the
    alphabet; labels are class indices padded with ``-1`` after each sequence.

    Args:
        layout: ``'NTC'`` or ``'TNC'``, the layout of ``pred``.
        label_layout: ``'NT'`` or ``'TN'``, the layout of ``label``.
        weight: global scalar weight.

    Call: ``loss(pred, label, pred_lengths=None, label_lengths=None, sample_weight=None)``
    -> ``(batch,)``: ``-log p(label | softmax(pred))`` per sample. ``pred_lengths`` (frames
    per sample) and ``label_lengths`` (labels per sample) are optional ``(batch,)`` arrays;
    without ``label_lengths`` a label ends at its first ``-1``. An impossible alignment gives
    ``inf`` (and no gradient).

    Example::

        ctc = CTCLoss()
        pred = nd.random.normal(shape=(2, 20, 5))          # 4 symbols + blank
        label = nd.array([[1, 0, -1], [2, 1, 1]])
        ctc(pred, label)                                    # shape (2,)
    """

    def __init__(self, layout='NTC', label_layout='NT', weight=None, **kwargs):
        if layout not in ('NTC', 'TNC'):
            raise ValueError(f"CTCLoss: layout must be 'NTC' or 'TNC', got {layout!r}")
        if label_layout not in ('NT', 'TN'):
            raise ValueError(f"CTCLoss: label_layout must be 'NT' or 'TN', got "
                             f'{label_layout!r}')
        super().__init__(weight, label_layout.find('N'), **kwargs)
        self._layout = layout
        self._label_layout = label_layout

    def forward(self, pred, label, pred_lengths=None, label_lengths=None, sample_weight=None):
        name = 'CTCLoss'
        if not isinstance(pred, NDArray) or pred.ndim != 3:
            raise ValueError(f'{name}: pred must be a 3-d NDArray ({self._layout}), got '
                             f'{getattr(pred, "shape", type(pred).__name__)}')
        pred = _as_float(pred)
        if self._layout == 'NTC':
            pred = ops.swapaxes(pred, 0, 1)
        label = _as_nd(label, pred, name, 'label')
        if label.ndim != 2:
            raise ValueError(f'{name}: label must be 2-d ({self._label_layout}), got shape '
                             f'{label.shape}')
        if self._label_layout == 'TN':
            label = ops.swapaxes(label, 0, 1)
        if label.shape[0] != pred.shape[1]:
            raise ValueError(f'{name}: {label.shape[0]} label sequences for a batch of '
                             f'{pred.shape[1]} predictions')
        loss = ops.ctc_loss(pred, label, pred_lengths, label_lengths)
        if sample_weight is not None:
            loss = _apply_sample_weight(loss, sample_weight, name)
        return loss * self._weight if self._weight is not None else loss


class SDMLLoss(Loss):
    """Smoothed deep metric learning loss (Bonadiman et al. 2019), as Gluon 1.9.1's.

    ``x1[i]`` and ``x2[i]`` are a positive pair and every other row of the batch a
    negative: with the squared distances ``D[i, j] = |x1[i] - x2[j]|^2`` and the smoothed
    targets ``labels = (1 - s) * I + s / (batch - 1) * (1 - I)``, the loss of row ``i`` is
    the KL divergence ``KLDivLoss(from_logits=True)(log_softmax(-D, axis=1), labels)``.

    Args:
        smoothing_parameter: the probability mass ``s`` spread over the negatives (< 1).
        weight: global scalar weight (MXNet 1.9.1 ignores it; xpnet applies it; the default
            1 gives the same numbers).
        batch_axis: must be 0.

    Call: ``loss(x1, x2)`` with two ``(batch, dim)`` arrays -> ``(batch,)``.
    """

    def __init__(self, smoothing_parameter=0.3, weight=1., batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self.kl_loss = KLDivLoss(from_logits=True)
        self.smoothing_parameter = smoothing_parameter

    def forward(self, x1, x2):
        name = 'SDMLLoss'
        if not isinstance(x1, NDArray):
            raise TypeError(f'{name}: x1 must be an NDArray, got {type(x1).__name__}')
        x1 = _as_float(x1)
        x2 = _cast(_as_nd(x2, x1, name, 'x2'), x1.dtype)
        if x1.shape != x2.shape or x1.ndim != 2:
            raise ValueError(f'{name}: x1 and x2 must both have shape (batch, dim), got '
                             f'{x1.shape} and {x2.shape}')
        n = x1.shape[0]
        if n < 2:
            raise ValueError(f'{name}: needs a batch of at least 2 pairs, got {n}')
        s = float(self.smoothing_parameter)
        diffs = ops.expand_dims(x1, 1) - ops.expand_dims(x2, 0)
        distances = ops.sum(ops.square(diffs), axis=2)
        eye = x1.xp.eye(n, dtype=x1.dtype)
        labels = _wrap(eye * (1 - s) + (1 - eye) * (s / (n - 1)), x1._ctx)
        loss = self.kl_loss(ops.log_softmax(-distances, axis=1), labels)
        return loss * self._weight if self._weight is not None else loss
