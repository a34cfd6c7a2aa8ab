"""GradientUpdateHandler: trainer.step(batch size) at batch end, first of all handlers;
gradient accumulation and global-norm clipping with their equivalences."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd
from xpnet.handlers import BatchEnd, CheckpointHandler, GradientUpdateHandler

from estimator_helpers import (clone_net, make_data, make_estimator, make_loader,
                               params_of)


def _spy_steps(est):
    """The batch sizes ``est.trainer.step`` is called with."""
    sizes = []
    step = est.trainer.step
    est.trainer.step = lambda n, **kw: (sizes.append(n), step(n, **kw))
    return sizes


def test_steps_with_the_batch_size():
    est = make_estimator()
    sizes = _spy_steps(est)
    x, y = make_data(n=40)
    est.fit(make_loader(x, y, batch_size=16), epochs=1)
    assert sizes == [16, 16, 8]


def test_runs_before_other_handlers():
    seen = []
    est = make_estimator()

    class Probe(BatchEnd):
        priority = -1500

        def batch_end(self, e, *args, **kwargs):
            seen.append(params_of(e.net)['0.bias'].copy())

    before = params_of(est.net)['0.bias']
    est.fit(make_loader(), batches=1, event_handlers=[Probe()])
    assert GradientUpdateHandler().priority == -2000
    assert not np.array_equal(seen[0], before)     # the update happened before Probe ran


def test_replacing_it_controls_the_update():
    class Accumulate(GradientUpdateHandler):
        """Steps every second batch (gradient accumulation)."""

        def batch_end(self, estimator, *args, **kwargs):
            if estimator.progress.batches % 2 == 0:
                super().batch_end(estimator, *args, **kwargs)

    est = make_estimator()
    for p in est.net.collect_params().values():
        p.grad_req = 'add'
    steps = _spy_steps(est)
    est.fit(make_loader(), batches=4, event_handlers=[Accumulate()])
    assert steps == [16, 16]
    assert sum(isinstance(h, GradientUpdateHandler) for h in est.event_handlers) == 1


# ---- accumulation and clipping ----------------------------------------------------------------
# Float32 tolerance of the equivalences: k batches of b samples sum their gradients in
# another order than one batch of k*b (k partial matrix products, then k-1 additions),
# so each gradient differs in the last bits (~1e-7 relative); over a few momentum steps
# that stays far below 1e-5.
RTOL, ATOL = 1e-5, 1e-6


def _estimator(net=None, ctx=None, lr=0.1, momentum=0.9):
    est = make_estimator(ctx=ctx, lr=lr, optimizer_params={'momentum': momentum})
    if net is not None:
        for p, q in zip(est.net.collect_params().values(), net.collect_params().values()):
            p.set_data(q.data(q.list_ctx()[0]).asnumpy())
    return est


def _assert_close(a, b):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=ATOL, err_msg=k)


@pytest.mark.parametrize('ctx', [None, [xpnet.cpu(0), xpnet.cpu(1)]])
def test_accumulating_k_batches_equals_one_batch_of_k_times_the_size(ctx):
    x, y = make_data(n=48)
    big = _estimator()
    small = _estimator(big.net, ctx=ctx)
    big.fit(make_loader(x, y, batch_size=12), epochs=2)
    small.fit(make_loader(x, y, batch_size=4), epochs=2,
              event_handlers=[GradientUpdateHandler(accumulate=3)])
    assert big.trainer.optimizer.num_update == small.trainer.optimizer.num_update == 8
    _assert_close(params_of(small.net), params_of(big.net))
    # the user's grad_req is untouched
    assert all(p.grad_req == 'write' for p in small.net.collect_params().values())


def test_the_last_batches_of_an_epoch_are_applied_at_its_end():
    est = make_estimator()
    sizes = _spy_steps(est)
    x, y = make_data(n=40)
    est.fit(make_loader(x, y, batch_size=8), epochs=2,        # 5 batches per epoch
            event_handlers=[GradientUpdateHandler(accumulate=2)])
    assert sizes == [16, 16, 8] * 2


def test_accumulate_refuses_parameters_already_adding():
    est = make_estimator()
    est.net.collect_params()['0.weight'].grad_req = 'add'
    with pytest.raises(ValueError, match=r"accumulate=2\) sums gradients itself.*0\.weight"):
        est.fit(make_loader(), epochs=1, event_handlers=[GradientUpdateHandler(accumulate=2)])


def _global_norm(arrays):
    return float(np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays)))


def test_clipping_bounds_the_mean_gradient_norm_of_the_update():
    c = 0.05
    est = _estimator(lr=1.0, momentum=0.0)          # plain SGD: update = -clipped gradient
    before = params_of(est.net)
    est.fit(make_loader(batch_size=48), batches=1,
            event_handlers=[GradientUpdateHandler(clip_global_norm=c)])
    after = params_of(est.net)
    assert _global_norm([after[k] - before[k] for k in before]) == pytest.approx(c, rel=1e-4)

    # unclipped, the same step is larger: the clip did something
    free = _estimator(lr=1.0, momentum=0.0)
    free.fit(make_loader(batch_size=48), batches=1)
    assert _global_norm([params_of(free.net)[k] - before[k] for k in before]) > 2 * c


def test_clipping_equals_the_hand_written_gluon_loop():
    c = 0.1
    x, y = make_data(n=48)
    est = _estimator()
    net = clone_net(est.net)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1,
                                                          'momentum': 0.9})
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    for data, label in make_loader(x, y, batch_size=16):
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.allreduce_grads()
        grads = [p.grad() for p in net.collect_params().values()]
        xpnet.utils.clip_global_norm(grads, c * data.shape[0], check_isfinite=False)
        trainer.update(data.shape[0])
    est.fit(make_loader(x, y, batch_size=16), epochs=1,
            event_handlers=[GradientUpdateHandler(clip_global_norm=c)])
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(net)[k], err_msg=k)


def test_clipping_across_devices_and_accumulation_equals_one_device_one_batch():
    c = 0.1
    x, y = make_data(n=48)
    one = _estimator()
    two = _estimator(one.net, ctx=[xpnet.cpu(0), xpnet.cpu(1)])
    one.fit(make_loader(x, y, batch_size=24), epochs=2,
            event_handlers=[GradientUpdateHandler(clip_global_norm=c)])
    two.fit(make_loader(x, y, batch_size=8), epochs=2,
            event_handlers=[GradientUpdateHandler(clip_global_norm=c, accumulate=3)])
    _assert_close(params_of(two.net), params_of(one.net))
    for p in two.net.collect_params().values():      # the replicas stayed identical
        a, b = (d.asnumpy() for d in p.list_data())
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('kwargs, message', [
    (dict(accumulate=0), 'accumulate must be a positive integer'),
    (dict(accumulate=1.5), 'accumulate must be a positive integer'),
    (dict(clip_global_norm=0), 'clip_global_norm must be a positive number'),
    (dict(clip_global_norm='1'), 'clip_global_norm must be a positive number'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradientUpdateHandler(**kwargs)


class _Crash(BatchEnd):
    priority = 100

    def __init__(self, at):
        self.at = at

    def batch_end(self, est, *args, **kwargs):
        if est.progress.batches == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize('batch_size, crash_at, resumed_from', [
    (6, 11, 'model-epoch1batch9'),      # 8 batches per epoch: 1 batch into a window
    (8, 8, 'model-epoch0batch6'),       # the epoch's last batch, its window still open
])
def test_resume_in_the_middle_of_a_window_is_exact(tmp_path, batch_size, crash_at,
                                                    resumed_from):
    x, y = make_data(n=48)

    def run(handlers, seed=0):
        xpnet.random.seed(seed)
        est = make_estimator(dropout=0.3, optimizer='adam', lr=0.01)
        est.fit(make_loader(x, y, batch_size=batch_size, shuffle=True), epochs=2,
                event_handlers=[GradientUpdateHandler(accumulate=4)] + handlers)
        return est

    ref = params_of(run([]).net)
    ckpt = dict(epoch_period=None, batch_period=3)       # 3, 6, 9: inside windows of 4
    with pytest.raises(KeyboardInterrupt):
        run([CheckpointHandler(str(tmp_path), **ckpt), _Crash(crash_at)])
    handler = CheckpointHandler(str(tmp_path), resume_from_checkpoint=True, **ckpt)
    est = run([handler], seed=5)
    assert handler.resumed_from == resumed_from
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)


def test_accumulation_clipping_and_resume_on_each_device(ctx, tmp_path):
    x, y = make_data(n=48)
    big = _estimator(ctx=ctx)
    first = _estimator(big.net, ctx=ctx)            # stops 1 batch into its second window
    big.fit(make_loader(x, y, batch_size=24), epochs=1,
            event_handlers=[GradientUpdateHandler(clip_global_norm=0.1)])
    ckpt = dict(epoch_period=None, batch_period=2)
    first.fit(make_loader(x, y, batch_size=8), batches=4, event_handlers=[
        GradientUpdateHandler(accumulate=3, clip_global_norm=0.1),
        CheckpointHandler(str(tmp_path), **ckpt)])
    resumed = _estimator(ctx=ctx)
    handler = CheckpointHandler(str(tmp_path), resume_from_checkpoint=True, **ckpt)
    resumed.fit(make_loader(x, y, batch_size=8), epochs=1, event_handlers=[
        GradientUpdateHandler(accumulate=3, clip_global_norm=0.1), handler])
    assert handler.resumed_from == 'model-epoch0batch4'
    _assert_close(params_of(resumed.net), params_of(big.net))
