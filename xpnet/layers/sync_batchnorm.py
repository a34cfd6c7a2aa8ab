"""SyncBatchNorm: batch normalization with statistics over the whole batch, across every
device the batch was split over (Zhang et al., 2018), in this process and in every rank of
an MPI job (:mod:`xpnet.distributed`).

In training mode each device computes its shard's count, mean and sum of squared deviations;
the devices of this process exchange them (a rendezvous in this layer) and the last to
arrive combines them exactly (Chan's parallel formula). Across ranks that thread then sums
``(count, sum, sum of squares)`` in float64 with one allreduce (on a communicator of the
layer family's own), so every rank normalizes with the statistics of the global batch. The
backward pass reduces the two sums the gradient needs in the same way. Every replica on
every rank receives the same update of the running statistics, so replicas stay identical.
On one device of one process it is exactly ``BatchNorm``.

The devices must run their passes concurrently (the rendezvous waits for all of them):
``Estimator`` does this, and user code can use :func:`xpnet.parallel.parallel_apply`. A
device left waiting raises a clear error after ``timeout`` seconds instead of hanging (a
missing rank is reported by :mod:`xpnet.distributed`'s own deadline).

Example::

    net.add(nn.Conv2D(16, 3), nn.SyncBatchNorm(), nn.Activation('relu'))
    net.initialize(ctx=[xpnet.gpu(0), xpnet.gpu(1)])
"""
import threading

from .. import distributed as dist
from ..autograd import _state, needs_grad, record_op
from ..backend import to_device
from ..ndarray import _wrap
from ..ops._amp import target as amp_target
from ..ops._base import norm_axis
from .normalization import BatchNorm

__all__ = ['SyncBatchNorm']


class _Rendezvous:
    """Collects one value per device for each round; the last device to arrive combines
    them (``combine(values)``, in device order) and every device gets the result."""

    def __init__(self, n, timeout):
        self.n, self.timeout = n, timeout
        self._cond = threading.Condition()
        self._rounds = {}

    def exchange(self, kind, rank, value, combine):
        with self._cond:
            slot = self._rounds.setdefault(kind, {'values': {}, 'done': None, 'taken': 0})
            while slot['done'] is not None:        # previous round still being read
                if not self._cond.wait(self.timeout):
                    raise RuntimeError('SyncBatchNorm: a previous synchronization round never '
                                       'completed')
                slot = self._rounds.setdefault(kind, {'values': {}, 'done': None, 'taken': 0})
            if rank in slot['values']:
                raise RuntimeError(f'SyncBatchNorm: device {rank} entered the same '
                                   f'{kind} synchronization twice; the devices must run their '
                                   'passes concurrently (see xpnet.parallel.parallel_apply)')
            slot['values'][rank] = value
            if len(slot['values']) == self.n:
                values = [slot['values'][r] for r in range(self.n)]
                try:
                    slot['done'] = ('ok', combine(values))
                except BaseException as err:     # every device raises it
                    slot['done'] = ('error', err)
                self._cond.notify_all()
            else:
                self._await(slot, kind)
            status, result = slot['done']
            slot['taken'] += 1
            if slot['taken'] == self.n:
                del self._rounds[kind]
                self._cond.notify_all()
            if status == 'error':
                raise result
            return result

    def _await(self, slot, kind):
        while slot['done'] is None:
            if not self._cond.wait(self.timeout):
                got = sorted(slot['values'])
                del self._rounds[kind]
                self._cond.notify_all()
                raise RuntimeError(
                    f'SyncBatchNorm: waited {self.timeout}s in the {kind} pass for '
                    f'{self.n} devices but only {len(got)} arrived ({got}). The '
                    'per-device passes must run concurrently: use Estimator or '
                    'xpnet.parallel.parallel_apply (or set num_devices=1).')


class SyncBatchNorm(BatchNorm):
    """Cross-device synchronized batch normalization (see the module docstring).

    Args:
        in_channels: channel count (0 infers it at the first forward).
        num_devices: devices taking part; default: the number of contexts the layer's
            parameters live on.
        momentum, epsilon, center, scale, use_global_stats, *_initializer: as ``BatchNorm``
            (channel axis 1).
        timeout: seconds a device waits for the others before raising.
    """

    def __init__(self, in_channels=0, num_devices=None, momentum=0.9, epsilon=1e-5,
                 center=True, scale=True, use_global_stats=False, beta_initializer='zeros',
                 gamma_initializer='ones', running_mean_initializer='zeros',
                 running_variance_initializer='ones', timeout=60.0, **kwargs):
        super().__init__(axis=1, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
                         use_global_stats=use_global_stats, beta_initializer=beta_initializer,
                         gamma_initializer=gamma_initializer,
                         running_mean_initializer=running_mean_initializer,
                         running_variance_initializer=running_variance_initializer,
                         in_channels=in_channels, **kwargs)
        self._num_devices = num_devices
        self._timeout = timeout
        self._rendezvous = None
        self._lock = threading.Lock()

    def _devices(self):
        n = self._num_devices or len(self.gamma.list_ctx())
        with self._lock:
            if self._rendezvous is None or self._rendezvous.n != n:
                self._rendezvous = _Rendezvous(n, self._timeout)
        return n

    def forward(self, x):
        n = self._devices()
        ranks = dist.size()
        if (n == 1 and ranks == 1) or not _state.training or self._use_global_stats:
            return super().forward(x)
        ctx = x.context
        axis = norm_axis(1, x.ndim, 'SyncBatchNorm')
        gamma, beta = self._params(x.shape[axis], ctx)
        if not self._scale:
            gamma.data[...] = 1
        ctxs = self.gamma.list_ctx()
        rank = ctxs.index(ctx) if self._num_devices is None else _rank_of(ctx, ctxs)
        low = amp_target()
        low = low if low is not None and x.dtype == low else None
        if low is not None:             # xpnet.amp: statistics in float32, as BatchNorm
            x = x.astype('float32')
        y = _sync_batch_norm(x, gamma, beta, self.running_mean.data(ctx),
                             self.running_var.data(ctx), self._rendezvous, rank,
                             self._epsilon, self._momentum, not self._scale, ranks > 1)
        return y if low is None else y.astype(low)

    def __repr__(self):
        return f'SyncBatchNorm(num_devices={self._num_devices}, eps={self._epsilon}, ' \
               f'momentum={self._momentum}, in_channels={self.gamma.shape[0]})'


def _rank_of(ctx, ctxs):
    try:
        return ctxs.index(ctx)
    except ValueError:
        raise RuntimeError(f'SyncBatchNorm: input on {ctx}, but the layer lives on {ctxs}') \
            from None


_comm = []
_comm_lock = threading.Lock()


def _ranks_comm():
    """The communicator SyncBatchNorm layers reduce over (made at first use, on every rank
    at the same point: the first training forward pass)."""
    with _comm_lock:
        if not _comm:
            _comm.append(dist.communicator('sync_batchnorm'))
    return _comm[0]


def _on(ctx, v):
    return v if isinstance(v, (int, float)) else to_device(v, ctx)


def _combine_stats(ctx, across_ranks):
    """The rendezvous' combine for the forward pass: ``(count, mean, var)`` of the whole
    batch from each device's ``(count, mean, m2)``."""
    def combine(parts):
        xp = ctx.xp
        total = sum(c for c, _, _ in parts)
        means = [to_device(m, ctx) for _, m, _ in parts]
        mean = sum(c * m for (c, _, _), m in zip(parts, means)) / total
        m2 = sum(to_device(q, ctx) + c * xp.square(m - mean)
                 for (c, _, q), m in zip(parts, means))
        if not across_ranks:
            return total, mean, m2 / total
        # one float64 allreduce of (count, sum, sum of squares): exact enough for any
        # mean/std ratio below ~1e6, and the same bits on every rank
        dtype, shape, C = mean.dtype, mean.shape, mean.size
        with ctx.use():
            m64 = mean.reshape(C).astype(xp.float64)
            stats = xp.concatenate([xp.full(1, float(total)), total * m64,
                                    m2.reshape(C).astype(xp.float64) + total * m64 * m64])
            _ranks_comm().allreduce(stats, ctx)
            n = stats[:1]
            mean64 = stats[1:C + 1] / n
            var = xp.maximum(stats[C + 1:] / n - mean64 * mean64, 0)
            return (n.astype(dtype), mean64.reshape(shape).astype(dtype),
                    var.reshape(shape).astype(dtype))
    return combine


def _combine_sums(ctx, across_ranks):
    """The rendezvous' combine for the backward pass: the two per-channel sums."""
    def combine(parts):
        S1 = sum(to_device(a, ctx) for a, _ in parts)
        S2 = sum(to_device(b, ctx) for _, b in parts)
        if across_ranks:
            with ctx.use():
                both = ctx.xp.concatenate([S1.reshape(-1), S2.reshape(-1)])
                _ranks_comm().allreduce(both, ctx)
                S1, S2 = both[:S1.size].reshape(S1.shape), both[S1.size:].reshape(S2.shape)
        return S1, S2
    return combine


def _sync_batch_norm(x, gamma, beta, running_mean, running_var, rdv, rank, eps, momentum,
                     fix_gamma, across_ranks):
    xp = x.xp
    ctx = x.context
    xd = x.data if x.dtype.kind == 'f' else x.data.astype('float32')
    C = xd.shape[1]
    red = (0,) + tuple(range(2, xd.ndim))
    pshape = (1, C) + (1,) * (xd.ndim - 2)
    count = xd.size // C
    mean_k = xd.mean(axis=red, keepdims=True)
    m2_k = xp.square(xd - mean_k).sum(axis=red, keepdims=True)
    total, mean, var = rdv.exchange('forward', rank, (count, mean_k, m2_k),
                                    _combine_stats(ctx, across_ranks))
    total, mean, var = _on(ctx, total), to_device(mean, ctx), to_device(var, ctx)
    inv = 1.0 / xp.sqrt(var + eps)
    xhat = (xd - mean) * inv
    g_ = xp.ones(pshape, dtype=xd.dtype) if fix_gamma else gamma.data.reshape(pshape)
    y = xhat * g_ + beta.data.reshape(pshape)
    rm, rv = running_mean.data, running_var.data
    rm *= momentum
    rm += (1 - momentum) * mean.reshape(C).astype(rm.dtype, copy=False)
    rv *= momentum
    rv += (1 - momentum) * var.reshape(C).astype(rv.dtype, copy=False)
    need = needs_grad(x, None if fix_gamma else gamma, beta)
    if need is None:
        return _wrap(y, ctx)

    def backward(g):
        gxhat = g * g_
        s1 = gxhat.sum(axis=red, keepdims=True)
        s2 = (gxhat * xhat).sum(axis=red, keepdims=True)
        S1, S2 = rdv.exchange('backward', rank, (s1, s2), _combine_sums(ctx, across_ranks))
        S1, S2 = to_device(S1, ctx), to_device(S2, ctx)
        gx = (gxhat - S1 / total - xhat * (S2 / total)) * inv if need[0] else None
        gg = (g * xhat).sum(axis=red).reshape(gamma.shape) if need[1] else None
        gb = g.sum(axis=red).reshape(beta.shape) if need[2] else None
        return gx, gg, gb
    return record_op(backward, (x, gamma, beta), y, ctx, need=need, name='sync_batch_norm')
