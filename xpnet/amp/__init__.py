"""Automatic mixed precision with MXNet 1.9's ``contrib.amp`` API.

``amp.init()`` makes the GEMM-type ops (``Dense``, convolutions, the fused RNN layers,
``nd.FullyConnected``...) compute in float16 and the numerically sensitive ones
(softmax, log-softmax, normalization statistics, exponentials and logarithms, sums and
means, norms, the losses) in float32; the lists follow MXNet's
(``xpnet/ops/_amp.py`` has them). Parameters stay float32 ("master weights"): each
float16 op casts its float32 weight on the fly, the cast is recorded by autograd, and
the gradient arrives at the parameter in float32, where the optimizer updates it in float32.

``amp.init_trainer(trainer)`` attaches a dynamic :class:`LossScaler` to a Trainer;
``with amp.scale_loss(loss, trainer) as scaled: autograd.backward(scaled)`` backpropagates
the loss times the scale, so small float16 gradients do not flush to zero, and
``trainer.step`` divides the gradients by the scale, skips the update (on the device: no
value is read back) when one of them overflowed, and adjusts the scale.

Example::

    from xpnet import amp, autograd
    amp.init()                                 # process-wide, as in MXNet
    net = ...; net.initialize()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    amp.init_trainer(trainer)
    with autograd.record():
        loss = loss_fn(net(x), y)
        with amp.scale_loss(loss, trainer) as scaled:
            autograd.backward(scaled)
    trainer.step(x.shape[0])

The Estimator does all of this with ``Estimator(..., amp=True)``.

``target_dtype='bfloat16'`` needs an array module with a bfloat16 dtype: NumPy has none
(xpnet does not depend on ``ml_dtypes``; NumPy gains one when ``ml_dtypes`` is imported)
and neither has CuPy 14, so it raises ``ValueError`` naming the device that lacks it.
"""
import contextlib

import numpy as np

from ..ops import _amp as _policy
from .loss_scaler import LossScaler

__all__ = ['init', 'init_trainer', 'scale_loss', 'unscale', 'is_enabled', 'target_dtype',
           'list_lp16_ops', 'list_fp32_ops', 'LossScaler']

_TARGETS = ('float16', 'bfloat16')


def _resolve(target_dtype, devices=('cpu',)):
    """The NumPy dtype of ``target_dtype`` ('float16' or 'bfloat16'), checked against the
    array modules of ``devices``."""
    name = target_dtype if isinstance(target_dtype, str) else \
        getattr(np.dtype(target_dtype) if target_dtype is not None else None, 'name', None)
    if name not in _TARGETS:
        raise ValueError(f'amp: target_dtype must be one of {_TARGETS}, got {target_dtype!r}')
    if name == 'float16':
        return np.dtype(np.float16)
    for device in devices:
        _check_device_dtype(name, device)
    return np.dtype('bfloat16')


def _check_device_dtype(name, device):
    """Raise ``ValueError`` if the array module of ``device`` (``'cpu'``, ``'gpu'`` or a
    Context) has no dtype ``name``."""
    from ..backend import Context
    kind = device.device_type if isinstance(device, Context) else device
    if kind == 'cpu' or kind == 'sim':
        try:
            np.dtype(name)
            return
        except TypeError:
            raise ValueError(f"amp: target_dtype {name!r} is not supported on {device}: NumPy "
                             f'has no {name} dtype (xpnet does not depend on ml_dtypes); use '
                             "target_dtype='float16'") from None
    if kind == 'gpu':
        import cupy
        if not hasattr(cupy, name):
            raise ValueError(f'amp: target_dtype {name!r} is not supported on {device}: CuPy '
                             f'{cupy.__version__} has no {name} dtype; use '
                             "target_dtype='float16'")


def init(target_dtype='float16', target_precision_ops=None, conditional_fp32_ops=None,
         fp32_ops=None):
    """Turn mixed precision on for the whole process (MXNet's ``amp.init``).

    Unlike MXNet it may be called before or after the model is built: the casts happen
    when ops run. Calling it again with the same type does nothing.

    Args:
        target_dtype: ``'float16'`` (or ``'bfloat16'`` where the array module has it).
        target_precision_ops, conditional_fp32_ops, fp32_ops: MXNet's overrides of its
            op lists; not supported (xpnet's lists are fixed), must be None.

    Raises:
        ValueError: an unknown or unsupported ``target_dtype``, or AMP already on with
            another one.
    """
    if target_precision_ops is not None or conditional_fp32_ops is not None or \
            fp32_ops is not None:
        raise NotImplementedError('amp.init: overriding the op lists is not supported; '
                                  'xpnet.ops._amp.POLICIES lists what runs in which type')
    dtype = _resolve(target_dtype)
    current = _policy.target()
    if current is not None and current != dtype:
        raise ValueError(f'amp.init: AMP is already on with target_dtype {current.name!r}; '
                         f'it cannot switch to {dtype.name!r} in this process')
    _policy.set_target(dtype)


def is_enabled():
    """True while AMP is on (after :func:`init`, or inside an ``Estimator(amp=True)`` run)."""
    return _policy.target() is not None


def target_dtype():
    """The low-precision dtype AMP computes in, or None when it is off."""
    return _policy.target()


def _reset():
    """Turn AMP off again (for tests; MXNet cannot)."""
    _policy.set_target(None)


@contextlib.contextmanager
def _scope(target_dtype='float16'):
    """AMP on inside the block and as it was afterwards (``Estimator(amp=True)``)."""
    dtype = _resolve(target_dtype)
    current = _policy.target()
    if current is not None and current != dtype:
        raise ValueError(f'amp: AMP is already on with target_dtype {current.name!r}, not '
                         f'{dtype.name!r}')
    previous = _policy.set_target(dtype)
    try:
        yield
    finally:
        _policy.set_target(previous)


def init_trainer(optimizer_or_trainer):
    """Attach a dynamic :class:`LossScaler` to a Trainer (MXNet's ``amp.init_trainer``);
    doing it twice keeps the first one.

    Raises:
        RuntimeError: AMP is not on (call :func:`init` first).
        TypeError: not a Trainer (MXNet's AMP works with Gluon Trainers only, so does
            xpnet's).
    """
    from ..trainer import Trainer
    if _policy.target() is None:
        raise RuntimeError('amp.init_trainer: AMP is not initialized; call amp.init() first')
    _attach_scaler(optimizer_or_trainer, Trainer)


def _attach_scaler(trainer, trainer_type=None):
    if trainer_type is None:
        from ..trainer import Trainer as trainer_type
    if not isinstance(trainer, trainer_type):
        raise TypeError(f'amp: expected an xpnet.Trainer (AMP works with Trainers only), got '
                        f'{type(trainer).__name__}')
    if trainer._amp_loss_scaler is None:
        scaler = LossScaler()
        if trainer._contexts:
            scaler._bind(trainer._contexts[0])
        trainer._amp_loss_scaler = scaler
    return trainer._amp_loss_scaler


def _scaler_of(trainer):
    scaler = getattr(trainer, '_amp_loss_scaler', None)
    if scaler is None:
        raise ValueError('amp: the trainer has no loss scaler; call amp.init_trainer(trainer) '
                         'first')
    return scaler


@contextlib.contextmanager
def scale_loss(loss, optimizer_or_trainer):
    """Yield ``loss`` (an NDArray or a list of them) multiplied by the trainer's loss scale,
    for the backward pass; the trainer's next update divides the gradients by it. NumPy's
    overflow warnings are silenced inside the block (overflow is what the scaler handles).

    Example::

        with amp.scale_loss(loss, trainer) as scaled:
            autograd.backward(scaled)
    """
    scaler = _scaler_of(optimizer_or_trainer)
    scaled = [scaler.scale(l) for l in loss] if isinstance(loss, (list, tuple)) \
        else scaler.scale(loss)
    # float16 overflow in the backward pass is expected: the scaler detects it and skips
    # the update, so NumPy's warnings about it are noise (a GPU gives none)
    with np.errstate(over='ignore', invalid='ignore'):
        yield scaled


def unscale(optimizer_or_trainer):
    """Divide the gradients by the loss scale now (MXNet's ``amp.unscale``), e.g. before
    reading or clipping them. ``trainer.allreduce_grads()`` already does it, and
    ``trainer.step``/``update`` do it when nothing else did."""
    _scaler_of(optimizer_or_trainer).unscale(optimizer_or_trainer._params)


def list_lp16_ops(target_dtype='float16'):
    """The xpnet ops that compute in the low-precision type under AMP."""
    _resolve(target_dtype)
    return sorted(n for n, (kind, _, _) in _policy.POLICIES.items() if kind == _policy.LOW)


def list_fp32_ops(target_dtype='float16'):
    """The xpnet ops that compute in float32 under AMP (their low-precision inputs cast)."""
    _resolve(target_dtype)
    return sorted(n for n, (kind, _, _) in _policy.POLICIES.items() if kind != _policy.LOW)
