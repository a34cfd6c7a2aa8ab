"""Activation layers: Activation, LeakyReLU, PReLU, ELU, SELU, GELU, Swish."""
from .. import initializer as _init
from .. import ops
from .block import HybridBlock
from .parameter import Parameter

__all__ = ['Activation', 'LeakyReLU', 'PReLU', 'ELU', 'SELU', 'GELU', 'Swish']


class Activation(HybridBlock):
    """Applies ``activation``: 'relu', 'sigmoid', 'tanh', 'softrelu' (softplus) or
    'softsign'."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        if activation not in ('relu', 'sigmoid', 'tanh', 'softrelu', 'softsign'):
            raise ValueError(f"Activation: unknown activation {activation!r}; expected 'relu', "
                             "'sigmoid', 'tanh', 'softrelu' or 'softsign'")
        self._act_type = activation

    def forward(self, x):
        return ops.activation(x, self._act_type)

    def __repr__(self):
        return f'Activation({self._act_type})'


class LeakyReLU(HybridBlock):
    """``x`` if ``x > 0`` else ``alpha * x`` (``alpha >= 0``)."""

    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        if alpha < 0:
            raise ValueError(f'LeakyReLU: alpha must be >= 0, got {alpha}')
        self._alpha = alpha

    def forward(self, x):
        return ops.leaky_relu(x, self._alpha)

    def __repr__(self):
        return f'LeakyReLU({self._alpha})'


class PReLU(HybridBlock):
    """Leaky ReLU with a learned slope.

    Args:
        alpha_initializer: initializer of the slope (Constant(0.25) by default).
        in_channels: number of slopes (1 shares one slope; else one per channel of axis 1).
    """

    def __init__(self, alpha_initializer=_init.Constant(0.25), in_channels=1, **kwargs):
        super().__init__(**kwargs)
        self._in_channels = in_channels
        self.alpha = Parameter('alpha', shape=(in_channels,), init=alpha_initializer)

    def forward(self, x):
        return ops.prelu(x, self.alpha.data(x.context), axis=1)


class ELU(HybridBlock):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self._alpha = alpha

    def forward(self, x):
        return ops.elu(x, self._alpha)


class SELU(HybridBlock):
    """Scaled exponential linear unit (Klambauer et al., 2017)."""

    def forward(self, x):
        return ops.selu(x)


class GELU(HybridBlock):
    """Gaussian error linear unit, exact erf form: ``x * Phi(x)``."""

    def forward(self, x):
        return ops.gelu(x)


class Swish(HybridBlock):
    """``x * sigmoid(beta * x)``."""

    def __init__(self, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        self._beta = beta

    def forward(self, x):
        return ops.swish(x, self._beta)
