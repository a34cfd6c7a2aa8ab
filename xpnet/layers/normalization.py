"""Normalization layers: BatchNorm, LayerNorm, InstanceNorm, GroupNorm (SyncBatchNorm lives in
``sync_batchnorm.py``).

As in Gluon, ``scale=False`` / ``center=False`` freeze gamma / beta (no gradient); BatchNorm
additionally treats gamma as 1 when ``scale=False`` (MXNet's ``fix_gamma``).
"""
from .. import ops
from .basic import deferred_shape
from .block import HybridBlock
from .parameter import Parameter

__all__ = ['BatchNorm', 'LayerNorm', 'InstanceNorm', 'GroupNorm']


class _AffineNorm(HybridBlock):
    """Holds gamma and beta of shape ``(in_channels,)`` (0: inferred at the first forward)."""

    def __init__(self, in_channels, center, scale, beta_initializer, gamma_initializer,
                 **kwargs):
        super().__init__(**kwargs)
        self._center, self._scale = center, scale
        self.gamma = Parameter('gamma', grad_req='write' if scale else 'null',
                               shape=(in_channels,), init=gamma_initializer,
                               allow_deferred_init=True, differentiable=scale)
        self.beta = Parameter('beta', grad_req='write' if center else 'null',
                              shape=(in_channels,), init=beta_initializer,
                              allow_deferred_init=True, differentiable=center)

    def _params(self, channels, ctx):
        for p in self._reg_params.values():
            deferred_shape(p, (channels,))
        return self.gamma.data(ctx), self.beta.data(ctx)

    def _check_axis(self, x, axis, name):
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f'{name}: axis {axis} is out of range for input of shape {x.shape}')
        return axis % x.ndim


class BatchNorm(_AffineNorm):
    """Batch normalization (Ioffe & Szegedy, 2015) over all axes but ``axis``.

    Training mode normalizes with the batch's biased statistics and updates
    ``running = momentum * running + (1 - momentum) * batch``; inference mode (or
    ``use_global_stats=True``) normalizes with the running statistics.

    Args:
        axis: the channel axis (1 for NCHW, -1 or 3 for NHWC).
        momentum: weight of the old running value (0.9 keeps 90%).
        epsilon: added to the variance.
        center, scale: learn beta / gamma.
        use_global_stats: always use (and never update) the running statistics.
        in_channels: channel count; 0 infers it at the first forward.
    """

    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True,
                 use_global_stats=False, beta_initializer='zeros', gamma_initializer='ones',
                 running_mean_initializer='zeros', running_variance_initializer='ones',
                 in_channels=0, **kwargs):
        super().__init__(in_channels, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        self._axis, self._momentum, self._epsilon = axis, momentum, epsilon
        self._use_global_stats = use_global_stats
        self.running_mean = Parameter('running_mean', grad_req='null', shape=(in_channels,),
                                      init=running_mean_initializer, allow_deferred_init=True,
                                      differentiable=False)
        self.running_var = Parameter('running_var', grad_req='null', shape=(in_channels,),
                                     init=running_variance_initializer,
                                     allow_deferred_init=True, differentiable=False)

    def forward(self, x):
        return self._forward_act(x, None)

    def _forward_act(self, x, act):
        """``forward``, followed by the activation ``act`` (None or 'relu') in the same op:
        ``Sequential`` calls this for a BatchNorm followed by ``Activation('relu')``."""
        axis = self._check_axis(x, self._axis, type(self).__name__)
        ctx = x.context
        gamma, beta = self._params(x.shape[axis], ctx)
        if not self._scale:
            gamma.data[...] = 1   # MXNet's fix_gamma: gamma is pinned to 1
        return ops.batch_norm(x, gamma, beta, self.running_mean.data(ctx),
                              self.running_var.data(ctx), axis=axis, eps=self._epsilon,
                              momentum=self._momentum, fix_gamma=not self._scale,
                              use_global_stats=self._use_global_stats, act=act)

    def __repr__(self):
        return (f'{type(self).__name__}(axis={self._axis}, eps={self._epsilon}, '
                f'momentum={self._momentum}, fix_gamma={not self._scale}, '
                f'use_global_stats={self._use_global_stats}, in_channels={self.gamma.shape[0]})')


# Sequential runs a BatchNorm followed by Activation('relu') through _forward_act (a
# subclass that overrides forward is called as written).
BatchNorm._relu_fusable_forward = BatchNorm.forward


class LayerNorm(_AffineNorm):
    """Layer normalization (Ba et al., 2016) over ``axis`` (the last by default)."""

    def __init__(self, axis=-1, epsilon=1e-5, center=True, scale=True,
                 beta_initializer='zeros', gamma_initializer='ones', in_channels=0, **kwargs):
        super().__init__(in_channels, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        self._axis, self._epsilon = axis, epsilon

    def forward(self, x):
        axis = self._check_axis(x, self._axis, 'LayerNorm')
        gamma, beta = self._params(x.shape[axis], x.context)
        pshape = [1] * x.ndim
        pshape[axis] = x.shape[axis]
        return ops.normalize(x, gamma, beta, (axis,), tuple(pshape), self._epsilon)[0]


class InstanceNorm(_AffineNorm):
    """Instance normalization (Ulyanov et al., 2016): per sample and channel (``axis``) over
    the remaining axes, biased variance. Gamma is frozen at 1 unless ``scale=True``."""

    def __init__(self, axis=1, epsilon=1e-5, center=True, scale=False,
                 beta_initializer='zeros', gamma_initializer='ones', in_channels=0, **kwargs):
        super().__init__(in_channels, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        self._axis, self._epsilon = axis, epsilon

    def forward(self, x):
        axis = self._check_axis(x, self._axis, 'InstanceNorm')
        if x.ndim < 3:
            raise ValueError(f'InstanceNorm: expected input of at least 3 dimensions (N, C, '
                             f'...), got shape {x.shape}')
        gamma, beta = self._params(x.shape[axis], x.context)
        red = tuple(i for i in range(1, x.ndim) if i != axis)
        pshape = [1] * x.ndim
        pshape[axis] = x.shape[axis]
        return ops.normalize(x, gamma, beta, red, tuple(pshape), self._epsilon)[0]


class GroupNorm(_AffineNorm):
    """Group normalization (Wu & He, 2018): channels (axis 1) split into ``num_groups``
    groups, each normalized over its channels and the spatial axes. As in MXNet 1.9, gamma
    and beta have one value per group: shape ``(num_groups,)``."""

    def __init__(self, num_groups=1, epsilon=1e-5, center=True, scale=True,
                 beta_initializer='zeros', gamma_initializer='ones', **kwargs):
        super().__init__(num_groups, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        if num_groups <= 0:
            raise ValueError(f'GroupNorm: num_groups must be positive, got {num_groups}')
        self._num_groups, self._epsilon = num_groups, epsilon

    def forward(self, x):
        G = self._num_groups
        if x.ndim < 2 or x.shape[1] % G:
            raise ValueError(f'GroupNorm: {x.shape[1] if x.ndim > 1 else "no"} channels '
                             f'(input shape {x.shape}) cannot be split into {G} groups')
        gamma, beta = self._params(G, x.context)
        return ops.normalize(x, gamma, beta, (2,), (1, G, 1), self._epsilon,
                             data_shape=(x.shape[0], G, -1))[0]
