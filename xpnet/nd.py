"""``xpnet.nd``: array functions under MXNet's names (also the ``F`` of ``hybrid_forward``).

Example::

    from xpnet import nd
    x = nd.ones((2, 3))
    y = nd.concat(x, nd.zeros((2, 1)), dim=1)     # (2, 4)
    p = nd.softmax(y, axis=-1)
"""
from . import random  # noqa: F401  (nd.random.uniform, nd.random.normal, ...)
from .ndarray import NDArray, array  # noqa: F401
from .ops import (abs, add, arange, argmax, argmin, argsort, astype, batch_dot,  # noqa: F401
                  broadcast_to, ceil, clip, concat, cos, divide, dot, dropout, elu, empty, erf,
                  exp, expand_dims, expm1, eye, flatten, flip, floor, full, full_like, gelu,
                  identity, linspace, log, log1p, log_softmax, matmul, max, maximum, mean, min,
                  minimum, multiply, negative, norm, one_hot, ones, ones_like, pad, pick, power,
                  prod, reciprocal, relu, repeat, reshape, round, rsqrt, selu, sigmoid, sign,
                  sin, softmax, softrelu, softsign, split, sqrt, square, squeeze, stack,
                  stop_gradient, subtract, sum, swapaxes, swish, take, tanh, tile, topk,
                  transpose, where, zeros, zeros_like)
from . import ops as _ops

# MXNet aliases -------------------------------------------------------------------------------
broadcast_add = elemwise_add = add
broadcast_sub = elemwise_sub = subtract
broadcast_mul = elemwise_mul = multiply
broadcast_div = elemwise_div = divide
broadcast_maximum = maximum
broadcast_minimum = minimum
broadcast_power = power
BlockGrad = stop_gradient
SliceChannel = split
Flatten = flatten
Concat = concat
Reshape = reshape
softmax_cross_entropy = _ops.softmax_cross_entropy


def broadcast_like(lhs, rhs):
    return broadcast_to(lhs, rhs.shape)


def reshape_like(lhs, rhs):
    return reshape(lhs, rhs.shape)


def slice_axis(data, axis, begin, end):
    """``data`` restricted to ``[begin, end)`` along ``axis`` (``end=None``: to the end)."""
    idx = [slice(None)] * data.ndim
    idx[axis] = slice(begin, end)
    return data[tuple(idx)]


def FullyConnected(data, weight, bias=None, num_hidden=None, no_bias=False, flatten=True):
    """MXNet's FullyConnected: ``data @ weight.T + bias`` (weight is (num_hidden, in))."""
    return _ops.fully_connected(data, weight, None if no_bias else bias, flatten)


def Activation(data, act_type):
    return _ops.activation(data, act_type)


def LeakyReLU(data, gamma=None, act_type='leaky', slope=0.25):
    """MXNet's LeakyReLU op: act_type 'leaky', 'prelu' (with ``gamma``), 'elu', 'selu', 'gelu'."""
    if act_type == 'leaky':
        return _ops.leaky_relu(data, slope)
    if act_type == 'prelu':
        return _ops.prelu(data, gamma)
    if act_type == 'elu':
        return _ops.elu(data, slope)
    if act_type == 'selu':
        return _ops.selu(data)
    if act_type == 'gelu':
        return _ops.gelu(data)
    raise ValueError(f'LeakyReLU: unknown act_type {act_type!r}')


def Dropout(data, p=0.5, axes=(), mode='training'):
    return _ops.dropout(data, p, axes, training=True if mode == 'always' else None)


def Embedding(data, weight, input_dim=None, output_dim=None, dtype='float32',
              sparse_grad=False):
    return _ops.embedding(data, weight, sparse_grad)


def BatchNorm(data, gamma, beta, moving_mean, moving_var, eps=1e-3, momentum=0.9,
              fix_gamma=True, use_global_stats=False, axis=1):
    return _ops.batch_norm(data, gamma, beta, moving_mean, moving_var, axis=axis, eps=eps,
                           momentum=momentum, fix_gamma=fix_gamma,
                           use_global_stats=use_global_stats)


def SoftmaxOutput(data, label=None, **kwargs):
    return softmax(data, axis=-1)


def waitall():
    """Wait for all pending device work (no-op on CPU)."""


# ---- convolution and pooling (MXNet's operator names; owner: issue 4) ---------------------

def _conv_default(value, fill):
    return fill if value is None or (isinstance(value, (tuple, list)) and len(value) == 0) \
        else value


def Convolution(data, weight, bias=None, kernel=None, stride=None, dilate=None, pad=None,
                num_filter=None, num_group=1, no_bias=False, layout=None, **kwargs):
    """MXNet's Convolution: ``weight`` (num_filter, C/num_group, *kernel); see
    ``xpnet.ops.convolution``. ``workspace``/``cudnn_*`` arguments are accepted and ignored."""
    return _ops.convolution(data, weight, None if no_bias else bias,
                            _conv_default(stride, 1), _conv_default(pad, 0),
                            _conv_default(dilate, 1), num_group, layout)


def Deconvolution(data, weight, bias=None, kernel=None, stride=None, dilate=None, pad=None,
                  adj=None, num_filter=None, num_group=1, no_bias=True, layout=None, **kwargs):
    """MXNet's Deconvolution (transposed convolution): ``weight`` (C, num_filter/num_group,
    *kernel); ``adj`` is the output padding. Note MXNet's default ``no_bias=True``."""
    return _ops.deconvolution(data, weight, None if no_bias else bias,
                              _conv_default(stride, 1), _conv_default(pad, 0),
                              _conv_default(dilate, 1), num_group, _conv_default(adj, 0),
                              layout)


def Pooling(data, kernel=None, pool_type='max', global_pool=False, pooling_convention='valid',
            stride=None, pad=None, count_include_pad=True, layout=None, **kwargs):
    """MXNet's Pooling: 'max', 'avg' or 'sum'; ``pooling_convention='full'`` is ceil mode.
    As in MXNet (unlike the Gluon layers) ``stride`` defaults to 1."""
    if pooling_convention not in ('valid', 'full'):
        raise ValueError(f"Pooling: pooling_convention must be 'valid' or 'full', got "
                         f"{pooling_convention!r}")
    kernel = _conv_default(kernel, 1)
    return _ops.pooling(data, kernel, _conv_default(stride, 1), _conv_default(pad, 0),
                        pool_type, pooling_convention == 'full', count_include_pad, layout,
                        global_pool)

# ---- end of convolution and pooling -------------------------------------------------------


def CTCLoss(data, label, data_lengths=None, label_lengths=None, use_data_lengths=False,
            use_label_lengths=False, blank_label='first'):
    """MXNet's CTCLoss op on ``data`` (T, N, C): per-sample loss (N,). With
    ``blank_label='first'`` (the op's default) the blank is class 0, labels start at 1 and
    are padded with 0; with ``'last'`` (Gluon's ``loss.CTCLoss``) the blank is ``C - 1`` and
    labels are padded with -1. Lengths are used only with the ``use_*`` flags."""
    if blank_label not in ('first', 'last'):
        raise ValueError(f"CTCLoss: blank_label must be 'first' or 'last', got {blank_label!r}")
    first = blank_label == 'first'
    return _ops.ctc_loss(data, label, data_lengths if use_data_lengths else None,
                         label_lengths if use_label_lengths else None,
                         blank=0 if first else -1, padding=0 if first else -1)


ctc_loss = CTCLoss
