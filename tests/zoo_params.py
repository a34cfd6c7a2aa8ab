"""Deterministic stand-in weights for the model-zoo parity test (numpy only).

``tests/oracle/gen_model_zoo.py`` (run with MXNet) and ``tests/test_model_zoo.py`` (run with
xpnet) both fill every parameter from a generator seeded by its structural name, so only
MXNet's outputs need to be stored. Scales keep activations of order one through deep nets.
"""
import zlib

import numpy as np

# Models whose forward pass is compared numerically, with their input size (H = W).
FORWARD = {'resnet18_v1': 32, 'resnet18_v2': 32, 'vgg11_bn': 32, 'alexnet': 64,
           'squeezenet1.1': 224, 'mobilenet0.25': 32, 'mobilenetv2_0.25': 32,
           'densenet121': 224, 'inceptionv3': 299}


def _uniform(rng, low, high, shape):
    u = rng.random(shape, dtype=np.float32)      # float32 draws: fast for 4096x4096
    u *= np.float32(high - low)
    u += np.float32(low)
    return u


def param_value(name, shape):
    """The stand-in value of the parameter with structural name ``name`` (PCG64 streams are
    the same in NumPy 1.x and 2.x)."""
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(name.encode())))
    leaf = name.rsplit('.', 1)[-1]
    if leaf in ('gamma', 'running_var'):
        return _uniform(rng, 0.5, 1.5, shape)
    if leaf in ('beta', 'running_mean', 'bias'):
        return _uniform(rng, -0.1, 0.1, shape)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    limit = float(np.sqrt(3.0 / fan_in))
    return _uniform(rng, -limit, limit, shape)


def model_input(name):
    """The input batch of model ``name``'s forward comparison: (1, 3, H, H)."""
    size = FORWARD[name]
    return np.random.RandomState(7).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
