"""GradientUpdateHandler: apply the optimizer step at each batch end."""
from ..estimator.event_handler import BatchEnd

__all__ = ['GradientUpdateHandler']


class GradientUpdateHandler(BatchEnd):
    """Calls ``estimator.trainer.step(batch_size)`` at each batch end, where the batch size
    is the number of per-sample losses of the batch (over all devices).

    Args:
        priority: runs first (-2000), so the other handlers see the updated weights.
    """

    def __init__(self, priority=-2000):
        self.priority = priority

    def batch_end(self, estimator, *args, **kwargs):
        from ..estimator.estimator import batch_size_of
        loss = kwargs['loss']
        if not isinstance(loss, (list, tuple)):
            loss = [loss]
        estimator.trainer.step(batch_size_of(loss))
