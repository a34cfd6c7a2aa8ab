"""History: the per-epoch record that ``Estimator.fit`` returns (Keras' ``History``).

Example::

    history = est.fit(train_loader, val_loader, epochs=10)
    history['validation accuracy']      # one value per epoch
    history.epoch                       # [0, 1, ..., 9]
    history.history['learning_rate']    # the learning rate at each epoch's end
"""
import math

__all__ = ['History']


class History:
    """Per-epoch values of every training and validation metric, the learning rate and
    the epoch time.

    ``history`` maps each name (the metric names, e.g. ``'training accuracy'``,
    ``'validation accuracy'``, plus ``'learning_rate'`` and ``'epoch_time'``) to a list
    aligned with ``epoch`` (the epoch indices); an epoch without a value for a name (say,
    validation every other epoch) holds NaN there. ``history[name]`` is ``history.history[name]``.
    """

    def __init__(self):
        self.epoch = []
        self.history = {}

    def record(self, epoch, values):
        """Append one epoch's ``{name: value}``; names never seen before are back-filled."""
        n = len(self.epoch)
        self.epoch.append(int(epoch))
        for name in values:
            if name not in self.history:
                self.history[name] = [math.nan] * n
        for name, column in self.history.items():
            value = values.get(name, math.nan)
            column.append(float(value) if value is not None else math.nan)

    def __getitem__(self, name):
        try:
            return self.history[name]
        except KeyError:
            raise KeyError(f'History has no {name!r}; it has {sorted(self.history)}') from None

    def __contains__(self, name):
        return name in self.history

    def __len__(self):
        return len(self.epoch)

    def keys(self):
        return self.history.keys()

    def last(self):
        """The values of the most recent epoch as ``{name: value}`` (empty if none)."""
        if not self.epoch:
            return {}
        return {name: column[-1] for name, column in self.history.items()}

    def state_dict(self):
        return {'epoch': list(self.epoch), 'history': {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state):
        self.epoch = [int(e) for e in state['epoch']]
        self.history = {k: [float(x) for x in v] for k, v in state['history'].items()}

    def __repr__(self):
        return f'History(epochs={len(self.epoch)}, names={list(self.history)})'
