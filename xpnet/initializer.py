"""Weight initializers (``xpnet.init``), with MXNet's names, arguments and formulas.

An initializer fills a host array; the Parameter then copies it to every device, so all
replicas start identical. Called with a parameter name, the base class dispatches on the
name the way MXNet does: names ending in ``weight`` get the initializer's rule, ``bias`` and
``beta`` and running means zeros, ``gamma`` and running variances ones.

Example::

    net.initialize(xpnet.init.Xavier(magnitude=2.24))
    layer = nn.Dense(10, weight_initializer='normal', bias_initializer=xpnet.init.Constant(0.1))
"""
import numpy as np

from . import random as _random
from .serialization import load_npz

__all__ = ['Initializer', 'Zero', 'One', 'Constant', 'Uniform', 'Normal', 'Xavier',
           'MSRAPrelu', 'Orthogonal', 'LSTMBias', 'Bilinear', 'Load', 'Mixed', 'create',
           'register', 'InitDesc']

_REGISTRY = {}


def register(cls):
    """Register an initializer class under its lower-case name (for string lookup)."""
    _REGISTRY[cls.__name__.lower()] = cls
    return cls


class InitDesc(str):
    """A parameter name with attributes (MXNet compatibility): ``InitDesc('fc_weight')``."""

    def __new__(cls, name, attrs=None, global_init=None):
        obj = super().__new__(cls, name)
        obj.attrs = attrs or {}
        obj.global_init = global_init
        return obj


class Initializer:
    """Base class. Subclasses implement ``_init_weight(name, arr)`` filling ``arr`` in place."""

    def __init__(self, **kwargs):
        self._kwargs = kwargs

    def __call__(self, desc, arr):
        """Fill the host array ``arr`` for the parameter called ``desc``."""
        name = str(desc)
        if getattr(desc, 'attrs', {}).get('__explicit__'):
            self._init_weight(name, arr)
        elif name.endswith('weight'):
            self._init_weight(name, arr)
        elif name.endswith('bias') or name.endswith('beta') or name.endswith('running_mean') \
                or name.endswith('moving_mean'):
            arr[...] = 0
        elif name.endswith('gamma') or name.endswith('running_var') \
                or name.endswith('moving_var'):
            arr[...] = 1
        else:
            self._init_weight(name, arr)
        return arr

    def init_array(self, name, shape, dtype=np.float32, explicit=False):
        """A new host array of ``shape`` filled by this initializer."""
        arr = np.zeros(shape, dtype=dtype)
        self(InitDesc(name, {'__explicit__': explicit}), arr)
        return arr

    def _init_weight(self, name, arr):
        raise NotImplementedError(f'{type(self).__name__} must implement _init_weight')

    def dumps(self):
        import json
        return json.dumps([type(self).__name__.lower(), self._kwargs])

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())
        return f'{type(self).__name__}({args})'


@register
class Zero(Initializer):
    """All zeros."""

    def _init_weight(self, name, arr):
        arr[...] = 0


@register
class One(Initializer):
    """All ones."""

    def _init_weight(self, name, arr):
        arr[...] = 1


@register
class Constant(Initializer):
    """A constant value (a scalar, or an array broadcast to the parameter's shape)."""

    def __init__(self, value):
        if not np.isscalar(value):
            from .backend import is_array, to_host
            value = to_host(value) if is_array(value) else np.asarray(value)  # CuPy's too
        super().__init__(value=value if np.isscalar(value) else value.tolist())
        self.value = value

    def _init_weight(self, name, arr):
        arr[...] = np.asarray(self.value, dtype=arr.dtype)


@register
class Uniform(Initializer):
    """Uniform on [-scale, scale] (Gluon's default initializer, scale 0.07)."""

    def __init__(self, scale=0.07):
        super().__init__(scale=scale)
        self.scale = scale

    def _init_weight(self, name, arr):
        arr[...] = _random.generator().uniform(-self.scale, self.scale, arr.shape)


@register
class Normal(Initializer):
    """Normal with mean 0 and standard deviation ``sigma``."""

    def __init__(self, sigma=0.01):
        super().__init__(sigma=sigma)
        self.sigma = sigma

    def _init_weight(self, name, arr):
        arr[...] = _random.generator().normal(0.0, self.sigma, arr.shape)


def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f'Xavier initialization needs a weight of at least 2 dimensions, got '
                         f'shape {tuple(shape)}')
    hw = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * hw, shape[0] * hw


@register
class Xavier(Initializer):
    """Glorot initialization: scale = sqrt(magnitude / factor), factor the average of fan-in
    and fan-out ('avg'), fan-in ('in') or fan-out ('out'); uniform or 'gaussian'."""

    def __init__(self, rnd_type='uniform', factor_type='avg', magnitude=3):
        super().__init__(rnd_type=rnd_type, factor_type=factor_type, magnitude=magnitude)
        if rnd_type not in ('uniform', 'gaussian'):
            raise ValueError(f"Xavier: rnd_type must be 'uniform' or 'gaussian', got {rnd_type!r}")
        if factor_type not in ('avg', 'in', 'out'):
            raise ValueError(f"Xavier: factor_type must be 'avg', 'in' or 'out', got "
                             f"{factor_type!r}")
        self.rnd_type, self.factor_type, self.magnitude = rnd_type, factor_type, float(magnitude)

    def _init_weight(self, name, arr):
        fan_in, fan_out = _fans(arr.shape)
        factor = {'avg': (fan_in + fan_out) / 2.0, 'in': fan_in, 'out': fan_out}[self.factor_type]
        scale = np.sqrt(self.magnitude / factor)
        g = _random.generator()
        if self.rnd_type == 'uniform':
            arr[...] = g.uniform(-scale, scale, arr.shape)
        else:
            arr[...] = g.normal(0, scale, arr.shape)


@register
class MSRAPrelu(Xavier):
    """He initialization for PReLU nets: gaussian Xavier with magnitude 2/(1+slope^2)."""

    def __init__(self, factor_type='avg', slope=0.25):
        super().__init__('gaussian', factor_type, 2.0 / (1 + slope ** 2))
        self._kwargs = {'factor_type': factor_type, 'slope': slope}


@register
class Orthogonal(Initializer):
    """An orthogonal matrix (rows or columns) times ``scale``, from the SVD of a random one."""

    def __init__(self, scale=1.414, rand_type='uniform'):
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale, self.rand_type = scale, rand_type

    def _init_weight(self, name, arr):
        nout = arr.shape[0]
        nin = int(np.prod(arr.shape[1:]))
        g = _random.generator()
        tmp = g.uniform(-1.0, 1.0, (nout, nin)) if self.rand_type == 'uniform' else \
            g.normal(0.0, 1.0, (nout, nin))
        u, _, v = np.linalg.svd(tmp, full_matrices=False)
        q = u if u.shape == tmp.shape else v
        arr[...] = self.scale * q.reshape(arr.shape)


@register
class LSTMBias(Initializer):
    """Zeros, except the forget-gate quarter (gate order i, f, g, o) set to ``forget_bias``."""

    def __init__(self, forget_bias=1.0):
        super().__init__(forget_bias=forget_bias)
        self.forget_bias = forget_bias

    def _init_weight(self, name, arr):
        arr[...] = 0
        h = arr.shape[0] // 4
        arr[h:2 * h] = self.forget_bias


@register
class Bilinear(Initializer):
    """Bilinear-upsampling kernels for a transposed convolution weight (…, kh, kw)."""

    def _init_weight(self, name, arr):
        shape = arr.shape
        f = np.ceil(shape[-1] / 2.0)
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        x = np.arange(shape[-1])
        y = np.arange(shape[-2])[:, None]
        kernel = (1 - np.abs(x / f - c)) * (1 - np.abs(y / f - c))
        arr[...] = np.broadcast_to(kernel, shape)


class Load(Initializer):
    """Initialize from a dict of host arrays (or an ``.npz`` file), falling back to
    ``default_init`` for names it lacks."""

    def __init__(self, param, default_init=None, verbose=False):
        super().__init__()
        if isinstance(param, str):
            param = load_npz(param, 'parameter')     # bounded, pickling disabled
        self.param = {k[4:] if k.startswith(('arg:', 'aux:')) else k: v for k, v in param.items()}
        self.default_init = default_init

    def __call__(self, desc, arr):
        name = str(desc)
        if name in self.param:
            if self.param[name].shape != arr.shape:
                raise ValueError(f'Load: parameter {name!r} has shape {arr.shape} but the '
                                 f'loaded array has shape {self.param[name].shape}')
            arr[...] = self.param[name]
        elif self.default_init is None:
            raise ValueError(f'Load: no value for parameter {name!r} and no default_init')
        else:
            self.default_init(desc, arr)
        return arr


class Mixed(Initializer):
    """Pick the initializer by the first regex in ``patterns`` matching the name."""

    def __init__(self, patterns, initializers):
        super().__init__()
        import re
        self.map = [(re.compile(p), create(i)) for p, i in zip(patterns, initializers)]

    def __call__(self, desc, arr):
        for pattern, init in self.map:
            if pattern.match(str(desc)):
                return init(desc, arr)
        raise ValueError(f'Mixed: parameter {str(desc)!r} matches no pattern')


_ALIASES = {'zeros': 'zero', 'ones': 'one', 'gaussian': 'normal', 'msra': 'msraprelu',
            'he': 'msraprelu', 'glorot': 'xavier'}


def create(init, **kwargs):
    """An Initializer from an instance, a name (``'xavier'``, ``'zeros'``...), or None."""
    if init is None or isinstance(init, Initializer):
        return init
    if isinstance(init, str):
        key = init.lower()
        key = _ALIASES.get(key, key)
        if key not in _REGISTRY:
            raise ValueError(f'unknown initializer {init!r}; known: '
                             f'{sorted(set(_REGISTRY) | set(_ALIASES))}')
        return _REGISTRY[key](**kwargs)
    if callable(init):
        return init
    raise TypeError(f'initializer must be an Initializer, a name or None, got {type(init).__name__}')
