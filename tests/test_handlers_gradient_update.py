"""GradientUpdateHandler: trainer.step(batch size) at batch end, first of all handlers."""
import numpy as np

from xpnet.handlers import BatchEnd, GradientUpdateHandler

from estimator_helpers import make_data, make_estimator, make_loader, params_of


def test_steps_with_the_batch_size():
    sizes = []
    est = make_estimator()
    step = est.trainer.step
    est.trainer.step = lambda n, **kw: (sizes.append(n), step(n, **kw))
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
    steps = []
    step = est.trainer.step
    est.trainer.step = lambda n, **kw: (steps.append(n), step(n, **kw))
    est.fit(make_loader(), batches=4, event_handlers=[Accumulate()])
    assert steps == [16, 16]
    assert sum(isinstance(h, GradientUpdateHandler) for h in est.event_handlers) == 1
