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
import weakref

from .backend import DeviceSwitch
from .backend.memory import owns_memory as _owns_memory

__all__ = ['record', 'pause', 'train_mode', 'predict_mode', 'is_recording', 'is_training',
           'set_recording', 'set_training', 'backward', 'mark_variables', 'Node', 'grad',
           'Function', 'register_ready_hook']


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
    """One recorded op: its inputs (``None`` where no gradient is needed) and backward rule;
    ``ctx`` is the device of its outputs, where its backward runs."""
    __slots__ = ('inputs', 'backward', 'seq', 'grads', 'owned', 'n_out', 'name', 'ctx')

    def __init__(self, inputs, backward, n_out=1, name=None, ctx=None):
        self.ctx = ctx
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
    node = Node(inputs, backward, 1, name, ctx)
    out = _wrap(out_data, ctx)
    out._node = node
    return out


def record_multi(backward, inputs, out_datas, ctx, need=None, name=None):
    """Like :func:`record_op` for an op with several outputs; backward gets a list of
    gradients with ``None`` for outputs that received none."""
    if need is not None:
        inputs = tuple(x if f else None for x, f in zip(inputs, need))
    node = Node(inputs, backward, len(out_datas), name, ctx)
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


def _backward(heads, head_grads, retain_graph, capture=None):
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
    bound = set()          # ids of gradient arrays already bound to a leaf's buffer
    prev_retain, _state.retain = _state.retain, retain_graph
    place = DeviceSwitch()     # each node's backward runs on its outputs' device
    try:
        for h, hg in zip(heads, head_grads):
            if hg is None:
                place.to(h._ctx)
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

        # leaf-ready hooks (below); autograd.grad writes no leaf, so it fires none
        ready = _ReadyTracker(heads) if _ready_hooks and capture is None else None
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
            place.to(node.ctx)
            if capture is not None:
                _capture_outputs(capture, node, grads)
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
                if x._ctx is not place.ctx:        # accumulate on the input's device
                    place.to(x._ctx)
                if src is not None:
                    if src.grads is None and src.n_out == 1:   # first gradient: fast path
                        src.grads = [g]
                        src.owned = [False]
                        heappush(heap, (-src.seq, src))
                    else:
                        _collect_node(heap, src, x._oidx, g, False)
                elif x._grad is not None:
                    _collect_leaf(leaves, x, g, False)
            if ready is not None:
                ready.node_done(inputs, leaves, bound, foreign)
    except BaseException:
        # every background job of this pass finishes before backward returns
        for entry in leaves.values():
            try:
                _resolved(entry[1])
            except BaseException:
                pass
        place.restore()
        raise
    finally:
        _state.retain = prev_retain

    try:
        entries = list(leaves.values())
        for entry, g in zip(entries, resolve_pending([e[1] for e in entries])):
            entry[1] = g
        if capture is not None:       # autograd.grad: hand the gradients back, write no .grad
            for leaf, g, _ in entries:
                if id(leaf) in capture and g is not None:
                    place.to(leaf._ctx)
                    capture[id(leaf)] = g.todense() if getattr(g, 'is_row_sparse', False) \
                        else g.copy()
            return
        if ready is not None:
            ready.flush(leaves, bound, foreign)
        for leaf, g, owned in leaves.values():
            if g is not None:
                place.to(leaf._ctx)
                _write_leaf(leaf, g, owned, bound, foreign)
                if ready is not None:
                    _fire_ready_hook(leaf)
    finally:
        place.restore()


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
# thread that would only wait helps instead), and ``done()``, which says without blocking
# whether the value is ready (leaf-ready hooks release such a leaf early). The engine needs nothing else, so it does not
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
        if (owned or (id(g) not in foreign and _owns_memory(g))) and id(g) not in bound \
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



# ---- autograd.grad and autograd.Function (Gluon 1.x API) ------------------------------------

def _capture_outputs(capture, node, grads):
    """Record the gradients of a node's outputs that ``grad()`` asked for."""
    for idx in range(node.n_out):
        key = (id(node), idx)
        if key in capture and grads[idx] is not None:
            capture[key] = _resolved(grads[idx]).copy()


def grad(heads, variables, head_grads=None, retain_graph=None, create_graph=False,
         train_mode=True):
    """The gradients of ``heads`` with respect to ``variables``, returned instead of being
    written to ``.grad`` (MXNet's ``autograd.grad``).

    Args:
        heads: an NDArray or a list of them (recorded inside ``record()``).
        variables: an NDArray or a list of them: arrays given ``attach_grad()`` before
            recording, or intermediate results of the recorded computation.
        head_grads: gradients of the heads (None: ones, as ``backward``).
        retain_graph: keep the graph for another backward pass (default: ``create_graph``).
        create_graph: record the gradient computation for higher-order derivatives; not
            supported (xpnet's backward rules compute on raw device arrays).

    Returns:
        One NDArray per variable (a single NDArray if ``variables`` is one); a variable
        the heads do not depend on gets zeros. No ``.grad`` buffer is changed.

    Example::

        x = nd.array([1., 2.]); x.attach_grad()
        with autograd.record():
            y = (x ** 3).sum()
        dx, = autograd.grad(y, [x])          # 3 * x**2
    """
    from .ndarray import NDArray
    if create_graph:
        raise NotImplementedError(
            'autograd.grad(create_graph=True): higher-order gradients are not supported; '
            'xpnet records first-order backward rules on raw device arrays, which are not '
            'themselves recorded')
    single = isinstance(variables, NDArray)
    variables = [variables] if single else list(variables)
    capture = {}
    for i, v in enumerate(variables):
        if not isinstance(v, NDArray):
            raise TypeError(f'autograd.grad: variable {i} is a {type(v).__name__}, not an '
                            'NDArray')
        if v._node is not None:
            capture[(id(v._node), v._oidx)] = None
        elif v._grad is not None:
            capture[id(v)] = None
        else:
            raise ValueError(f'autograd.grad: variable {i} is not part of a recorded graph; '
                             'call attach_grad() on it before autograd.record()')
    retain = create_graph if retain_graph is None else retain_graph
    _backward(heads, head_grads, retain, capture)
    out = []
    for v in variables:
        key = (id(v._node), v._oidx) if v._node is not None else id(v)
        g = capture[key]
        if g is None:
            with v._ctx.use():
                g = v.xp.zeros(v.shape, dtype=v.dtype)
        out.append(_wrap(g, v._ctx))
    return out[0] if single else out


class Function:
    """A differentiable operation with a hand-written gradient (MXNet's
    ``autograd.Function``).

    Subclasses define ``forward(*inputs)`` (run with recording paused) and
    ``backward(*output_grads)`` returning one gradient per input (an NDArray, or None for
    no gradient); ``save_for_backward(*arrays)`` keeps what backward needs, available as
    ``saved_tensors``. Calling the instance records it as one node of the graph.

    Example::

        class Sigmoid(autograd.Function):
            def forward(self, x):
                y = 1 / (1 + nd.exp(-x))
                self.save_for_backward(y)
                return y

            def backward(self, dy):
                y, = self.saved_tensors
                return dy * y * (1 - y)

        with autograd.record():
            z = Sigmoid()(x)
    """

    def __init__(self):
        self._saved_tensors = ()

    def save_for_backward(self, *args):
        """Keep ``args`` for :meth:`backward` (as ``saved_tensors``)."""
        self._saved_tensors = args

    @property
    def saved_tensors(self):
        return self._saved_tensors

    def forward(self, *inputs):
        raise NotImplementedError(f'{type(self).__name__} must implement forward()')

    def backward(self, *output_grads):
        raise NotImplementedError(f'{type(self).__name__} must implement backward()')

    def __call__(self, *inputs):
        from .ndarray import NDArray
        for i, x in enumerate(inputs):
            if not isinstance(x, NDArray):
                raise TypeError(f'{type(self).__name__}: input {i} is a {type(x).__name__}, '
                                'not an NDArray')
        with pause(train_mode=_state.training):
            outputs = self.forward(*inputs)
        single = isinstance(outputs, NDArray)
        outs = [outputs] if single else list(outputs)
        need = needs_grad(*inputs)
        if need is None:
            return outputs
        ctx = outs[0]._ctx
        shapes = [x.shape for x in inputs]

        def backward_fn(grads):
            grads = [grads] if single else grads
            head = [_wrap(g if g is not None else o.xp.zeros(o.shape, dtype=o.dtype), o._ctx)
                    for g, o in zip(grads, outs)]
            with pause(train_mode=_state.training):
                result = self.backward(*head)
            result = [result] if isinstance(result, NDArray) or result is None \
                else list(result)
            if len(result) != len(inputs):
                raise ValueError(f'{type(self).__name__}.backward returned {len(result)} '
                                 f'gradient(s) for {len(inputs)} input(s)')
            in_grads = []
            for i, g in enumerate(result):
                if g is not None and tuple(g.shape) != shapes[i]:
                    raise ValueError(f'{type(self).__name__}.backward: gradient {i} has shape '
                                     f'{tuple(g.shape)}, input {i} has shape {shapes[i]}')
                in_grads.append(g._data if isinstance(g, NDArray) else g)
            return tuple(in_grads)
        name = type(self).__name__
        if single:
            return record_op(backward_fn, inputs, outputs._data, ctx, need, name)
        return record_multi(backward_fn, inputs, [o._data for o in outs], ctx, need, name)


# ---- leaf-ready hooks ----------------------------------------------------------------------
# Data-parallel training (xpnet.distributed) starts reducing a parameter's gradient across
# processes while the backward pass still runs through earlier layers. A hook registered on
# a leaf runs once per pass as soon as the leaf's gradient is final: when every node of the
# pass that consumes the leaf has run (edges counted by a walk of the graph before the pass,
# made only while hooks exist), and, for a gradient still computed in the background, once
# that job is done; hooks run in the order the leaves became final, which depends on the
# graph only. The leaf's gradient is written to its buffer first, so the hook reads it
# there; leaves not released during the pass are written and hooked at its end.

_ready_hooks = {}     # id(leaf) -> (weak reference to the leaf, fn)


class ReadyHookHandle:
    """Returned by :func:`register_ready_hook`; ``remove()`` unregisters the hook."""
    __slots__ = ('_key', '_ref')

    def __init__(self, key, ref):
        self._key, self._ref = key, ref

    def remove(self):
        entry = _ready_hooks.get(self._key)
        if entry is not None and entry[0] is self._ref:
            del _ready_hooks[self._key]


def register_ready_hook(leaf, fn):
    """Call ``fn(leaf)`` in every backward pass as soon as ``leaf``'s gradient is final.

    ``leaf`` is an array with a gradient buffer (``attach_grad()``, e.g. a Parameter's
    data). The hook runs in the thread running ``backward``, after the gradient was written
    to ``leaf.grad``, and only in passes that gave ``leaf`` a gradient. A leaf has at most
    one hook (a new one replaces the old); it is dropped when the leaf is garbage.

    Returns:
        A handle whose ``remove()`` unregisters the hook.
    """
    key = id(leaf)

    def forget(ref, hooks=_ready_hooks):      # bound now: module globals vanish at exit
        entry = hooks.get(key)
        if entry is not None and entry[0] is ref:
            del hooks[key]
    ref = weakref.ref(leaf, forget)
    _ready_hooks[key] = (ref, fn)
    return ReadyHookHandle(key, ref)


def _fire_ready_hook(leaf):
    entry = _ready_hooks.get(id(leaf))
    if entry is not None and entry[0]() is leaf:
        entry[1](leaf)


def _settled(g):
    """False only for a background gradient whose job is still running (never blocks)."""
    if not is_pending(g):
        return True
    done = getattr(g, 'done', None)         # optional in the pending protocol
    return done is not None and done()


class _ReadyTracker:
    """One pass's count of graph edges into each hooked leaf (see the section comment)."""
    __slots__ = ('counts', 'late')

    def __init__(self, heads):
        counts, seen = {}, set()
        stack = [h._node for h in heads if h._node is not None]
        while stack:
            node = stack.pop()
            if node.seq in seen or node.inputs is None:
                continue
            seen.add(node.seq)
            for x in node.inputs:
                if x is None:
                    continue
                if x._node is not None:
                    stack.append(x._node)
                elif x._grad is not None and id(x) in _ready_hooks:
                    counts[id(x)] = counts.get(id(x), 0) + 1
        self.counts, self.late = counts, []

    def node_done(self, inputs, leaves, bound, foreign):
        """Count the edges of a node that just ran; release the leaves it finished."""
        counts = self.counts
        if counts:
            for x in inputs:
                if x is None or x._node is not None:
                    continue
                n = counts.get(id(x))
                if n is None:
                    continue
                if n > 1:
                    counts[id(x)] = n - 1
                    continue
                del counts[id(x)]
                if id(x) in leaves:
                    self.late.append(x)
        # in the order the leaves became final (a deterministic order, whatever the timing
        # of background jobs): a leaf waits for the one before it
        late = self.late
        while late and self._release(late[0], leaves, bound, foreign):
            del late[0]

    def flush(self, leaves, bound, foreign):
        """At the end of the pass (gradients resolved): release the final leaves still
        waiting, in order, before the engine writes the others."""
        for x in self.late:
            self._release(x, leaves, bound, foreign)
        self.late = []

    @staticmethod
    def _release(x, leaves, bound, foreign):
        """Write and hook leaf ``x`` if its gradient is ready; False to try again later."""
        entry = leaves.get(id(x))
        if entry is None:
            return True
        if not _settled(entry[1]):
            return False
        del leaves[id(x)]
        g = _resolved(entry[1])
        if g is not None:
            with x._ctx.use():
                _write_leaf(x, g, entry[2], bound, foreign)
            _fire_ready_hook(x)
        return True
