"""Mixed precision at the op boundary: which ops run in the low-precision type under AMP,
which in float32, and the casts that put their inputs there.

:mod:`xpnet.amp` turns AMP on (``amp.init()``) by setting :data:`_target`; ``xpnet.ops``
wraps every op named in :data:`POLICIES` with :func:`on_device_amp` instead of
``_base.on_device``. The lists follow MXNet 1.9.1's ``contrib/amp/lists/symbol_fp16.py``:

- ``LOW_PRECISION`` (MXNet's FP16_FUNCS): the GEMM-type ops (fully connected,
  convolution, transposed convolution, the fused RNN) cast their float inputs (data,
  weights, biases, states) to the target type and compute in it.
- ``FLOAT32`` (MXNet's FP32_FUNCS and its conditional list): exponentials, logarithms,
  powers, sums and means, norms, softmax and log-softmax, layer/instance/group
  normalization, the fused losses, sorting, deformable convolution, softrelu/ELU/SELU:
  inputs in the target type are cast to float32, so these compute and return float32.
- ``FLOAT32_KEEP``: batch normalization computes its statistics in float32 and returns
  the input's type (MXNet runs BatchNorm on float16 data with float32 statistics).
- Everything else runs in the type of its inputs; an op meeting float16 and float32
  operands computes in float32 (NumPy's promotion: MXNet's WIDEST_TYPE_CASTS).

Every cast is an ``astype`` recorded on the tape, so gradients flow back to float32
parameters in float32. With AMP off the wrapped ops cost one global read more than the
others (no extra call frame).
"""
import functools
import inspect

import numpy as np

from ._base import NDArray, _call_context, run_on
from .math import astype as _astype

__all__ = ['POLICIES', 'on_device_amp', 'set_target', 'target']

_FLOAT32 = np.dtype(np.float32)
_target = None      # the low-precision dtype while AMP is on, else None (process-wide)

LOW, FLOAT32, FLOAT32_KEEP = 'low', 'float32', 'float32_keep'

#: op name -> (policy, the argument names it applies to (None: every NDArray argument),
#:             condition (argument name, values) or None)
POLICIES = {
    # MXNet's FP16_FUNCS
    'fully_connected': (LOW, ('x', 'weight', 'bias'), None),
    'convolution': (LOW, ('data', 'weight', 'bias'), None),
    'deconvolution': (LOW, ('data', 'weight', 'bias'), None),
    'rnn_sequence': (LOW, ('x', 'h0', 'c0', 'i2h_weight', 'h2h_weight', 'i2h_bias', 'h2h_bias',
                           'h2r_weight'), None),
    # BatchNorm: float32 statistics; the running statistics are updated in place, never cast
    'batch_norm': (FLOAT32_KEEP, ('x', 'gamma', 'beta'), None),
}
POLICIES.update({name: (FLOAT32, None, None) for name in (
    # MXNet's FP32_FUNCS, under xpnet's op names
    'exp', 'expm1', 'log', 'log1p', 'power', 'rpower', 'square', 'reciprocal', 'rdivide',
    'rsqrt', 'sum', 'sum_axes', 'mean', 'prod', 'norm', 'softmax', 'log_softmax',
    'normalize', 'softmax_cross_entropy', 'sigmoid_binary_cross_entropy', 'ctc_loss',
    'topk', 'argsort', 'deformable_convolution', 'modulated_deformable_convolution',
    # MXNet's CONDITIONAL_FP32_FUNCS: Activation(softrelu), LeakyReLU(elu, selu)
    'softrelu', 'elu', 'selu')})
POLICIES['activation'] = (FLOAT32, None, ('act_type', ('softrelu',)))


def target():
    """The low-precision dtype AMP casts to, or None when AMP is off."""
    return _target


def set_target(dtype):
    """Turn the casts on (``dtype``: a NumPy dtype) or off (None); returns the previous
    target. Used by :mod:`xpnet.amp` only."""
    global _target
    previous, _target = _target, dtype
    return previous


def on_device_amp(fn, name):
    """``_base.on_device(fn)`` with ``fn``'s AMP policy applied while AMP is on.

    The device dispatch is written out here rather than wrapping ``on_device``'s wrapper,
    so that with AMP off a listed op costs what any other op does plus one global read.
    """
    kind, names, condition = POLICIES[name]
    cast = _make_cast(fn, kind, names, condition)

    @functools.wraps(fn)
    def op(*args, **kwargs):
        run = fn if _target is None else cast
        try:
            ctx = args[0]._ctx          # the common case: an NDArray first
        except (IndexError, AttributeError):
            ctx = _call_context(args, kwargs)
            if ctx is None:
                return run(*args, **kwargs)
        if ctx._rt is None:
            return run(*args, **kwargs)
        return run_on(ctx, run, *args, **kwargs)
    return op


def _make_cast(fn, kind, names, condition):
    """``fn`` with its inputs cast by the policy ``kind`` (see the module docstring)."""
    params = list(inspect.signature(fn).parameters)
    positions = None if names is None else {params.index(n) for n in names}
    cond_pos = None if condition is None else params.index(condition[0])

    def selected(i, key):
        return positions is None or (i in positions if key is None else key in names)

    @functools.wraps(fn)
    def cast_call(*args, **kwargs):
        if condition is not None:
            value = args[cond_pos] if len(args) > cond_pos else kwargs.get(condition[0])
            if value not in condition[1]:
                return fn(*args, **kwargs)
        low = _target
        dtype = low if kind == LOW else _FLOAT32
        first = args[0] if args else None
        args = [_cast(a, dtype, low, kind) if selected(i, None) else a
                for i, a in enumerate(args)]
        kwargs = {k: _cast(v, dtype, low, kind) if selected(None, k) else v
                  for k, v in kwargs.items()}
        out = fn(*args, **kwargs)
        if kind == FLOAT32_KEEP and isinstance(first, NDArray) and first.dtype == low and \
                isinstance(out, NDArray) and out.dtype != low:
            out = _astype(out, low)
        return out
    return cast_call


def _cast(value, dtype, low, kind):
    """``value`` as ``dtype`` when it is a float NDArray the policy casts: every float
    type into the low-precision one for LOW ops, the low type into float32 otherwise."""
    if not isinstance(value, NDArray):
        return value
    have = value.dtype
    if have == dtype or have.kind != 'f':
        return value
    if kind != LOW and have != low and have.itemsize >= 4:
        return value            # float32/float64 inputs of float32 ops stay as they are
    return _astype(value, dtype)
