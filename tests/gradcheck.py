"""Finite-difference gradient checking for any xpnet function of NDArrays.

``check_grad(fn, inputs)`` runs ``fn`` on float64 copies of ``inputs`` under
``autograd.record()``, backpropagates a random head gradient, and compares every input's
gradient with central differences of ``sum(head * fn(...))``. ``check_layer_grad`` does the
same for a Block's inputs and parameters.

Example::

    check_grad(lambda x, w: nd.dot(x, w).tanh(), [np.random.randn(3, 4), np.random.randn(4, 2)])
"""
import numpy as np

import xpnet
from xpnet import autograd
from xpnet.backend import to_host


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _objective(outs, heads):
    return sum(float(np.sum(o.asnumpy().astype(np.float64) * h)) for o, h in zip(outs, heads))


def numeric_grad(f, arrays, heads, eps=1e-6):
    """Central differences of ``sum(heads * f(arrays))`` with respect to each array."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = _objective(f(), heads)
            flat[i] = old - eps
            fm = _objective(f(), heads)
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


def check_grad(fn, inputs, ctx=None, eps=1e-6, rtol=1e-5, atol=1e-7, wrt=None, seed=0,
               train_mode=True):
    """Assert that ``fn``'s autograd gradients match finite differences in float64.

    Args:
        fn: function of NDArrays returning an NDArray (or a list of them).
        inputs: host arrays (converted to float64 unless integer).
        ctx: device (cpu by default).
        wrt: indices of the inputs to differentiate (all float inputs by default).
    """
    ctx = ctx or xpnet.cpu()
    rng = np.random.default_rng(seed)
    # C order: numeric_grad perturbs a reshape(-1) view, which must not be a copy.
    hosts = [np.array(a, dtype=np.float64, order='C') if np.asarray(a).dtype.kind == 'f'
             else np.array(a, order='C') for a in inputs]
    if wrt is None:
        wrt = [i for i, a in enumerate(hosts) if a.dtype.kind == 'f']
    nds = [xpnet.array(a, ctx=ctx, dtype=a.dtype) for a in hosts]
    for i in wrt:
        nds[i].attach_grad()
    with autograd.record(train_mode=train_mode):
        outs = _as_list(fn(*nds))
    heads = [rng.standard_normal(o.shape) for o in outs]
    autograd.backward(outs, [xpnet.array(h, ctx=ctx, dtype=o.dtype) for o, h in zip(outs, heads)])
    analytic = [nds[i].grad.asnumpy() for i in wrt]

    def run():
        arrs = [xpnet.array(a, ctx=ctx, dtype=a.dtype) for a in hosts]
        with autograd.pause(train_mode=train_mode):
            return _as_list(fn(*arrs))
    numeric = numeric_grad(run, [hosts[i] for i in wrt], heads, eps)
    for i, a, n in zip(wrt, analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol,
                                   err_msg=f'gradient of input {i} does not match finite '
                                           f'differences')
    return analytic


def check_layer_grad(block, inputs, ctx=None, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0,
                     train_mode=True, params=True):
    """Gradient check of a Block (cast to float64) w.r.t. its float inputs and parameters.

    The block must already be initialized (call it once to finish deferred init). Training
    mode is on by default; note that a layer whose forward is random (Dropout) cannot be
    checked this way.
    """
    ctx = ctx or xpnet.cpu()
    block.cast('float64')
    rng = np.random.default_rng(seed)
    # C order: numeric_grad perturbs a reshape(-1) view, which must not be a copy.
    hosts = [np.array(a, dtype=np.float64, order='C') if np.asarray(a).dtype.kind == 'f'
             else np.array(a, order='C') for a in inputs]
    plist = [p for p in block.collect_params().values() if p.grad_req != 'null'] if params \
        else []
    # Analytic gradients.
    nds = [xpnet.array(a, ctx=ctx, dtype=a.dtype) for a in hosts]
    fidx = [i for i, a in enumerate(hosts) if a.dtype.kind == 'f']
    for i in fidx:
        nds[i].attach_grad()
    state = _stateful_snapshot(block)
    with autograd.record(train_mode=train_mode):
        outs = _as_list(block(*nds))
    heads = [rng.standard_normal(o.shape) for o in outs]
    autograd.backward(outs, [xpnet.array(h, ctx=ctx, dtype=o.dtype) for o, h in zip(outs, heads)])
    analytic = [nds[i].grad.asnumpy() for i in fidx] + [p.grad(ctx).asnumpy() for p in plist]

    pvals = [p.data(ctx).asnumpy().astype(np.float64) for p in plist]

    def run():
        _stateful_restore(block, state)
        for p, v in zip(plist, pvals):
            p.set_data(v)
        arrs = [xpnet.array(a, ctx=ctx, dtype=a.dtype) for a in hosts]
        with autograd.pause(train_mode=train_mode):
            return _as_list(block(*arrs))
    numeric = numeric_grad(run, [hosts[i] for i in fidx] + pvals, heads, eps)
    names = [f'input {i}' for i in fidx] + [p.name for p in plist]
    for name, a, n in zip(names, analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol,
                                   err_msg=f'gradient of {name} does not match finite '
                                           f'differences')
    _stateful_restore(block, state)
    return analytic


def _stateful_snapshot(block):
    """Values of parameters without gradient (e.g. running statistics) to restore between
    finite-difference evaluations."""
    return {k: to_host(p.data().data).copy() for k, p in block.collect_params().items()
            if p.grad_req == 'null' and p.is_initialized}


def _stateful_restore(block, state):
    params = block.collect_params()
    for k, v in state.items():
        params[k].set_data(v)
