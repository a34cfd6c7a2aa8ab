"""The fused device paths of the ops: each a function of its own that an op picks (for
CuPy and the simulated device, float32/float64; see :func:`xpnet.backend.kernels.fused`)
and that returns the op's output with its backward, built from the kernels of
:mod:`xpnet.backend.kernels` plus cuBLAS products. The CPU paths are untouched.

- ``dense``: fully-connected layers (bias + activation and their gradients fused);
- ``loss``: sparse softmax cross-entropy (forward and backward from one kernel);
- ``dropout``: masks drawn on the device (Philox, keyed by ``xpnet.random``'s state);
- ``norm``: training-mode BatchNorm (+ ReLU);
- ``conv``: im2col + GEMM convolutions, GEMM + gather col2im input gradients;
- ``pool``: max / average pooling;
- ``rnn``: one gate kernel per recurrent step, forward and backward (its own
  step functions inside ``ops.rnn_sequence``).

Each path is a function returning ``(output data, backward)`` (``backward`` None when no
input needs a gradient), as the CPU fast paths of ``ops/conv.py`` do; :func:`record` makes
the op's NDArray of it.
"""
from .._base import _wrap, record_op

__all__ = ['record']


def record(result, inputs, ctx, name, need=None):
    """The op's NDArray from a fused path's ``(output, backward)``: just wrapped, or the
    output of one new autograd node."""
    out, backward = result
    if backward is None:
        return _wrap(out, ctx)
    return record_op(backward, inputs, out, ctx, need=need, name=name)
