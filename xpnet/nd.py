"""``xpnet.nd``: array functions under MXNet's names (also the ``F`` of ``hybrid_forward``).

Example::

    from xpnet import nd
    x = nd.ones((2, 3))
    y = nd.concat(x, nd.zeros((2, 1)), dim=1)     # (2, 4)
    p = nd.softmax(y, axis=-1)
"""
import builtins as _builtins

from . import random  # noqa: F401  (nd.random.uniform, nd.random.normal, ...)
from .ndarray import NDArray, array, write_out as _write_out  # noqa: F401
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
    return NDArray.slice_axis(data, axis, begin, end)


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



# ---- Gluon 1.x surface: legacy names, slicing, files, ``out=`` ------------------------------

def slice(data, begin, end, step=()):  # noqa: A001  (MXNet's name)
    """MXNet's ``slice``: ``data[begin[0]:end[0]:step[0], ...]`` with None for a whole axis;
    axes beyond ``begin`` are kept whole. Differentiable."""
    return NDArray.slice(data, begin, end, step)


def slice_like(data, shape_like, axes=()):
    """``data`` cut to the shape of ``shape_like`` (on ``axes``, or all axes)."""
    axes = range(data.ndim) if not axes else [a % data.ndim for a in axes]
    key = [_builtins.slice(None)] * data.ndim
    for a in axes:
        key[a] = _builtins.slice(0, shape_like.shape[a])
    return data[tuple(key)]


def cast(data, dtype):
    """``data`` as ``dtype`` (MXNet's ``cast``/``Cast``)."""
    return astype(data, dtype)


Cast = cast


def sum_axis(data, axis=None, keepdims=False, exclude=False):
    return sum(data, axis, keepdims, exclude)


def _comparison(how):
    def compare(lhs, rhs):
        if not isinstance(lhs, NDArray):
            lhs, rhs = rhs, lhs
            how_ = {'less': 'greater', 'greater': 'less', 'less_equal': 'greater_equal',
                    'greater_equal': 'less_equal'}.get(how, how)
            return _ops.compare(lhs, rhs, how_)
        return _ops.compare(lhs, rhs, how)
    compare.__name__ = how
    compare.__doc__ = f'Elementwise ``{how}`` as 1/0 in the inputs\' dtype (MXNet\'s rule).'
    return compare


equal = broadcast_equal = _comparison('equal')
not_equal = broadcast_not_equal = _comparison('not_equal')
greater = broadcast_greater = _comparison('greater')
greater_equal = broadcast_greater_equal = _comparison('greater_equal')
lesser = broadcast_lesser = _comparison('less')
lesser_equal = broadcast_lesser_equal = _comparison('less_equal')


def logical_not(data):
    """1 where ``data`` is 0, else 0 (in ``data``'s dtype)."""
    return _ops.compare(data, 0, 'equal')


def moveaxis(data, source, destination):
    axes = [a for a in range(data.ndim) if a != source % data.ndim]
    axes.insert(destination % data.ndim, source % data.ndim)
    return transpose(data, tuple(axes))


def gather_nd(data, indices):
    """``data[indices[0], indices[1], ...]``: ``indices`` (M, ...) indexes the first M axes.
    Differentiable (repeated positions accumulate)."""
    return data[tuple(indices[i] for i in range(indices.shape[0]))]


def smooth_l1(data, scalar=1.0):
    """``0.5 * (scalar * x)**2`` where ``|x| < 1/scalar**2``, else ``|x| - 0.5/scalar**2``."""
    s2 = float(scalar) ** 2
    a = abs(data)
    return where(a < 1.0 / s2, square(data) * (0.5 * s2), a - 0.5 / s2)


def L2Normalization(data, eps=1e-10, mode='instance'):
    """``data / sqrt(sum(data**2) + eps)`` over all axes but the first ('instance'), over
    axis 1 ('channel') or over axes 2.. ('spatial')."""
    axes = {'instance': tuple(range(1, data.ndim)), 'channel': (1,),
            'spatial': tuple(range(2, data.ndim))}.get(mode)
    if axes is None:
        raise ValueError(f"L2Normalization: mode must be 'instance', 'channel' or 'spatial', "
                         f'got {mode!r}')
    return data / sqrt(sum(square(data), axis=axes, keepdims=True) + eps)


def SequenceMask(data, sequence_length=None, use_sequence_length=False, value=0.0, axis=0):
    """MXNet's SequenceMask: steps at and after each length set to ``value``."""
    if not use_sequence_length or sequence_length is None:
        return data
    return _ops.sequence_mask(data, sequence_length, axis, value)


def SequenceLast(data, sequence_length=None, use_sequence_length=False, axis=0):
    """MXNet's SequenceLast: each sequence's last valid step."""
    if not use_sequence_length or sequence_length is None:
        return take(data, array([data.shape[axis] - 1], ctx=data.context), axis=axis) \
            .squeeze(axis)
    return _ops.sequence_last(data, sequence_length, axis)


def SequenceReverse(data, sequence_length=None, use_sequence_length=False, axis=0):
    """MXNet's SequenceReverse: each sequence reversed within its length."""
    return _ops.sequence_reverse(data, sequence_length if use_sequence_length else None, axis)


def sort(data, axis=-1, is_ascend=True):
    """Sorted values along ``axis`` (differentiable through the permutation)."""
    idx = argsort(data, axis, is_ascend)
    return _ops.take_along_axis(data, idx.astype('int64'), axis)


def reset_arrays(*arrays, num_arrays=None):
    """Set every array to zero in place (MXNet's ``reset_arrays``)."""
    if num_arrays is not None and num_arrays != len(arrays):
        raise ValueError(f'reset_arrays: num_arrays={num_arrays} but {len(arrays)} arrays given')
    for a in arrays:
        with a.context.use():
            a.data[...] = 0


# legacy random names of MXNet 1.x
uniform = random_uniform = random.uniform
normal = random_normal = random.normal
random_randint = random.randint
random_poisson = random.poisson
random_exponential = random.exponential
random_gamma = random.gamma
random_negative_binomial = random.negative_binomial
random_generalized_negative_binomial = random.generalized_negative_binomial
sample_multinomial = random.multinomial
shuffle = random.shuffle

from .ndarray_io import save, load  # noqa: E402,F401


def _accepting_out(fn):
    """``fn`` with MXNet's ``out=`` argument (see :func:`xpnet.ndarray.write_out`)."""
    def call(*args, out=None, **kwargs):
        return _write_out(fn(*args, **kwargs), out)
    call.__name__, call.__qualname__, call.__doc__ = fn.__name__, fn.__name__, fn.__doc__
    call.__wrapped__ = fn
    call._takes_out = True
    return call


# Every array function of this namespace takes ``out=`` as in MXNet (random draws already do).
_NO_OUT = {'array', 'NDArray', 'random', 'waitall', 'reset_arrays', 'save', 'load', 'split',
           'SliceChannel', 'uniform', 'normal', 'random_uniform', 'random_normal',
           'random_randint', 'random_poisson', 'random_exponential', 'random_gamma',
           'random_negative_binomial', 'random_generalized_negative_binomial',
           'sample_multinomial', 'shuffle', 'topk', 'stop_gradient', 'BlockGrad'}
for _name, _fn in list(globals().items()):
    if _name.startswith('_') or _name in _NO_OUT or not callable(_fn) or isinstance(_fn, type):
        continue
    if getattr(_fn, '__module__', '').startswith('xpnet') and not getattr(_fn, '_takes_out',
                                                                          False):
        globals()[_name] = _accepting_out(_fn)
del _name, _fn
