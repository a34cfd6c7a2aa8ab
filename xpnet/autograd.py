"""Define-by-run automatic differentiation over ``xp`` arrays.

Inside ``autograd.record()``, every differentiable op whose inputs need a gradient
creates a :class:`Node` holding its inputs and a ``backward`` closure; the op's output
NDArray points at the node. ``backward()`` walks the nodes from the heads in reverse
creation order (each node has a sequence number, and a node is always younger than
its inputs, so a max-heap on it is a valid reverse topological order) and hands each
leaf (an array with ``attach_grad()``, e.g. a Parameter) its gradient according to its
``grad_req``.

Writing an op (see ``xpnet/ops``)::

    def exp(x):
        y = x.xp.exp(x._data)
        need = needs_grad(x)
        if need is None:
            return x._new(y)
        return record_op(lambda g: (g * y,), (x,), y, x._ctx)

Rules for backward closures: return one gradient (or ``None``) per input, with the
input's shape and dtype; never modify the incoming gradient in place (it may be shared);
return fresh arrays or views of the incoming gradient, never an array saved from forward.
A gradient may also be *pending* (:func:`is_pending`: work still running, e.g. on a
background thread, see ``backend.hostpool.defer``): a leaf's is resolved only when the
leaf gradients are written at the end of the pass, any other at once. Every pending
gradient of a pass has been resolved when ``backward`` returns, and the exception of the
work behind one is raised from it.

Example::

    x = xpnet.array([1., 2.]); x.attach_grad()
    with autograd.record():
        y = (x * x).sum()
    y.backward()            # x.grad == [2, 4]
"""
import heapq
import itertools
import threading

__all__ = ['record', 'pause', 'train_mode', 'predict_mode', 'is_recording', 'is_training',
           'set_recording', 'set_training', 'backward', 'mark_variables', 'Node']


class _State(threading.local):
    """Per-thread recording/training flags, so devices driven from parallel threads (see
    ``xpnet.parallel``) each keep their own ``record()`` scope."""

    def __init__(self):
        self.recording = False
        self.training = False
        self.retain = False   # True while a backward pass keeps the graph (retain_graph)


_state = _State()
_seq = itertools.count(1)   # global: node order is comparable across threads


def is_recording():
    """True inside ``record()`` (and not inside a nested ``pause()``)."""
    return _state.recording


def is_training():
    """True when layers such as Dropout and BatchNorm behave as in training."""
    return _state.training


def set_recording(is_recording):
    """Set the recording flag; returns the previous value."""
    prev, _state.recording = _state.recording, bool(is_recording)
    return prev


def set_training(train_mode):
    """Set the training flag; returns the previous value."""
    prev, _state.training = _state.training, bool(train_mode)
    return prev


class _Scope:
    __slots__ = ('_rec', '_train', '_prev')

    def __init__(self, recording, training):
        self._rec, self._train = recording, training

    def __enter__(self):
        self._prev = (_state.recording, _state.training)
        if self._rec is not None:
            _state.recording = self._rec
        if self._train is not None:
            _state.training = self._train
        return self

    def __exit__(self, *exc):
        _state.recording, _state.training = self._prev
        return False


def record(train_mode=True):
    """Context in which ops are taped for ``backward()``; training mode by default."""
    return _Scope(True, train_mode)


def pause(train_mode=False):
    """Context in which nothing is taped (e.g. metric updates inside ``record()``)."""
    return _Scope(False, train_mode)


def train_mode():
    """Context forcing training behaviour (Dropout active, BatchNorm batch statistics)."""
    return _Scope(None, True)


def predict_mode():
    """Context forcing inference behaviour."""
    return _Scope(None, False)


class Node:
    """One recorded op: its inputs (``None`` where no gradient is needed) and backward rule."""
    __slots__ = ('inputs', 'backward', 'seq', 'grads', 'owned', 'n_out', 'name')

    def __init__(self, inputs, backward, n_out=1, name=None):
        self.inputs = inputs
        self.backward = backward
        self.n_out = n_out
        self.grads = None
        self.owned = None
        self.name = name
        self.seq = next(_seq)

    def __repr__(self):
        return f'<Node {self.name or "op"} #{self.seq}>'


def needs_grad(*inputs):
    """Per-input flags telling which inputs need a gradient, or None if no node is needed."""
    if not _state.recording:
        return None
    flags = tuple(x is not None and (x._node is not None or x._grad is not None)
                  for x in inputs)
    return flags if True in flags else None


_wrap = None   # ndarray._wrap, bound by xpnet.ndarray at import (it imports this module)


def record_op(backward, inputs, out_data, ctx, need=None, name=None):
    """Wrap ``out_data`` in an NDArray produced by a new node (single output)."""
    if need is not None:
        inputs = tuple(x if f else None for x, f in zip(inputs, need))
    node = Node(inputs, backward, 1, name)
    out = _wrap(out_data, ctx)
    out._node = node
    return out


def record_multi(backward, inputs, out_datas, ctx, need=None, name=None):
    """Like :func:`record_op` for an op with several outputs; backward gets a list of
    gradients with ``None`` for outputs that received none."""
    if need is not None:
        inputs = tuple(x if f else None for x, f in zip(inputs, need))
    node = Node(inputs, backward, len(out_datas), name)
    outs = []
    for i, d in enumerate(out_datas):
        o = _wrap(d, ctx)
        o._node = node
        o._oidx = i
        outs.append(o)
    return outs


def mark_variables(variables, gradients, grad_reqs='write'):
    """Attach the given gradient buffers to ``variables`` (MXNet's API)."""
    if not isinstance(variables, (list, tuple)):
        variables, gradients = [variables], [gradients]
    if isinstance(grad_reqs, str):
        grad_reqs = [grad_reqs] * len(variables)
    for v, g, req in zip(variables, gradients, grad_reqs):
        v._node = None
        v._grad_req = req
        v._grad = g if req != 'null' else None


def _add(a, b, owned):
    """a + b; in place when ``a`` is an accumulator the engine owns."""
    if owned:
        a += b
        return a
    return a + b


def backward(heads, head_grads=None, retain_graph=False, train_mode=True):
    """Compute the gradients of ``heads`` with respect to every leaf they depend on.

    Args:
        heads: an NDArray or a list of them.
        head_grads: gradients of the heads (same shapes); ``None`` means ones, which for
            a non-scalar head is Gluon's rule (the gradient of its sum).
        retain_graph: keep the graph so ``backward`` can be called on it again.
    """
    _backward(heads, head_grads, retain_graph)


def _backward(heads, head_grads, retain_graph):
    from .ndarray import NDArray
    if isinstance(heads, NDArray):
        heads = [heads]
        if head_grads is not None and not isinstance(head_grads, (list, tuple)):
            head_grads = [head_grads]
    heads = list(heads)
    if head_grads is None:
        head_grads = [None] * len(heads)
    if len(head_grads) != len(heads):
        raise ValueError(f'backward: {len(heads)} heads but {len(head_grads)} head gradients')

    heap = []
    leaves = {}            # id(leaf) -> [leaf, grad, owned]
    foreign = set()        # ids of arrays the user owns (head gradients): never bound to leaves
    prev_retain, _state.retain = _state.retain, retain_graph
    try:
        for h, hg in zip(heads, head_grads):
            if hg is None:
                g, owned = h.xp.ones(h.shape, dtype=h.dtype), True
            else:
                g = hg._data if isinstance(hg, NDArray) else hg
                if tuple(g.shape) != h.shape:
                    raise ValueError(f'backward: head gradient shape {tuple(g.shape)} does not '
                                     f'match head shape {h.shape}')
                foreign.add(id(g))
                owned = False
            node = h._node
            if node is None:
                if h._grad is None:
                    raise ValueError('backward: the array is not the result of a recorded '
                                     'computation (use autograd.record() and attach_grad())')
                _collect_leaf(leaves, h, g, owned)
                continue
            _collect_node(heap, node, h._oidx, g, owned)

        heappop, heappush = heapq.heappop, heapq.heappush
        while heap:
            node = heappop(heap)[1]
            backward_fn = node.backward
            if backward_fn is None:
                raise RuntimeError(
                    'backward: this graph has already been freed by an earlier backward(); '
                    'pass retain_graph=True to the first call to differentiate it again')
            grads = node.grads
            node.grads = node.owned = None
            in_grads = backward_fn(grads[0] if node.n_out == 1 else grads)
            inputs = node.inputs
            if not retain_graph:
                node.backward = None
                node.inputs = None
            for x, g in zip(inputs, in_grads):
                if g is None or x is None:
                    continue
                src = x._node
                if is_pending(g):
                    # a gradient still being computed (a layer's weight gradient in the
                    # background, see backend.hostpool.defer): a leaf takes it at the end
                    if src is None and x._grad is not None:
                        _collect_leaf(leaves, x, g, False)
                        continue
                    g = _resolved(g)
                    if g is None:
                        continue
                if src is not None:
                    if src.grads is None and src.n_out == 1:   # first gradient: fast path
                        src.grads = [g]
                        src.owned = [False]
                        heappush(heap, (-src.seq, src))
                    else:
                        _collect_node(heap, src, x._oidx, g, False)
                elif x._grad is not None:
                    _collect_leaf(leaves, x, g, False)
    except BaseException:
        # every background job of this pass finishes before backward returns
        for entry in leaves.values():
            try:
                _resolved(entry[1])
            except BaseException:
                pass
        raise
    finally:
        _state.retain = prev_retain

    entries = list(leaves.values())
    for entry, g in zip(entries, resolve_pending([e[1] for e in entries])):
        entry[1] = g
    bound = set()
    for leaf, g, owned in leaves.values():
        if g is not None:
            _write_leaf(leaf, g, owned, bound, foreign)


def _collect_node(heap, node, idx, g, owned):
    grads = node.grads
    if grads is None:
        node.grads = grads = [None] * node.n_out
        node.owned = [False] * node.n_out
        heapq.heappush(heap, (-node.seq, node))   # youngest first; seqs are unique
    prev = grads[idx]
    if prev is None:
        grads[idx] = g
        node.owned[idx] = owned
    else:
        grads[idx] = _add(prev, g, node.owned[idx])
        node.owned[idx] = True


def _collect_leaf(leaves, leaf, g, owned):
    entry = leaves.get(id(leaf))
    if entry is None:
        leaves[id(leaf)] = [leaf, g, owned]
    else:
        prev, g = _resolved(entry[1]), _resolved(g)
        if prev is None or g is None:
            entry[1] = g if prev is None else prev
            return
        entry[1] = _add(prev, g, entry[2])
        entry[2] = True


# ---- pending gradients ------------------------------------------------------------------------
# The protocol between the engine and whatever computes gradients asynchronously (the host
# thread pool's background jobs): a pending gradient has ``result()``, which waits for the
# value (an array or None) and raises the work's exception; it may also have
# ``run_here()``, which runs the work in the calling thread if it has not started yet (a
# thread that would only wait helps instead). The engine needs nothing else, so it does not
# depend on how the work is scheduled.

def is_pending(value):
    """Whether a backward rule's gradient ``value`` is pending (has ``result()``)."""
    return getattr(value, 'result', None) is not None


def _resolved(value):
    return value.result() if is_pending(value) else value


def resolve_pending(values):
    """``values`` with each pending gradient replaced by its result: first every one that
    has not started runs in the calling thread (``run_here()``, in order), then each is
    awaited."""
    for v in values:
        run_here = getattr(v, 'run_here', None)
        if run_here is not None:
            run_here()
    return [_resolved(v) for v in values]


def _write_leaf(leaf, g, owned, bound, foreign):
    buf = leaf._grad
    req = leaf._grad_req
    if getattr(g, 'is_row_sparse', False):
        buf._accumulate_sparse(g, req)
        leaf._fresh_grad = True
        return
    data = buf._data
    if g.dtype != data.dtype:
        g, owned = g.astype(data.dtype), True
    if g.shape != data.shape:
        raise ValueError(f'gradient of shape {g.shape} for an array of shape {data.shape}')
    if req == 'add':
        data += g
    elif req == 'write':
        # Rebind the buffer to a fresh, unaliased gradient instead of copying it.
        if (owned or (g.base is None and id(g) not in foreign)) and id(g) not in bound \
                and type(g) is type(data):
            buf._data = g
            bound.add(id(g))
        else:
            data[...] = g
    leaf._fresh_grad = True


def grad_retained():
    """True while the running backward pass keeps its graph (ops may then not consume
    the buffers they saved from forward)."""
    return _state.retain
