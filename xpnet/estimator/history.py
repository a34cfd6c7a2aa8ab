"""History: the per-epoch record that ``Estimator.fit`` returns (Keras' ``History``).

Example::

    history = est.fit(train_loader, val_loader, epochs=10)
    history['validation accuracy']      # one value per epoch
    history.epoch                       # [0, 1, ..., 9]
    history.history['learning_rate']    # the learning rate at each epoch's end
    history.plot('curves.png')          # with matplotlib (pip install 'xpnet[plot]')
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

    # ---- plotting ---------------------------------------------------------------------------
    def _panels(self, metrics):
        """``[(title, [names])]``: a metric's training and validation values share a panel;
        the learning rate has its own; the epoch time is left out unless asked for."""
        panels = {}
        for name in self.history:
            base = name
            for role in ('training ', 'validation '):
                if name.startswith(role):
                    base = name[len(role):]
            panels.setdefault(base, []).append(name)
        if metrics is None:
            return [(b, names) for b, names in panels.items() if b != 'epoch_time']
        wanted = [metrics] if isinstance(metrics, str) else list(metrics)
        out = []
        for m in wanted:
            if m in panels:
                out.append((m, panels[m]))
            elif m in self.history:
                out.append((m, [m]))
            else:
                raise ValueError(f'History.plot: no metric {m!r}; it has '
                                 f'{sorted(set(panels) | set(self.history))}')
        return out

    def plot(self, path=None, metrics=None):
        """Draw the curves per epoch with matplotlib: one panel per metric with its training
        and validation values, and one for the learning rate (log scale when it spans more
        than a factor 10).

        Args:
            path: a file to save the figure to (the format follows the extension, e.g.
                ``.png``, ``.pdf``, ``.svg``); None: only return the figure.
            metrics: which panels: metric names without the ``'training '``/``'validation '``
                prefix (``'accuracy'``), full names, or ``'learning_rate'``; default all.

        Returns:
            the ``matplotlib.figure.Figure`` (made without pyplot: no window opens and no
            global state changes).

        Raises:
            ImportError: matplotlib is not installed (``pip install 'xpnet[plot]'``).
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError as err:
            raise ImportError("History.plot needs matplotlib, which is not installed: "
                              "pip install 'xpnet[plot]' (or pip install matplotlib)") from err
        if not self.epoch:
            raise ValueError('History.plot: nothing to plot, no epoch has been recorded')
        panels = self._panels(metrics)
        cols = min(len(panels), 3)
        rows = -(-len(panels) // cols)
        fig = Figure(figsize=(4.5 * cols, 3.2 * rows), layout='constrained')
        for i, (title, names) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, i + 1)
            for name in names:
                label = name[:-len(title)].strip() or name
                ax.plot(self.epoch, self.history[name], marker='o', markersize=3, label=label)
            values = [v for n in names for v in self.history[n] if v == v]
            if title == 'learning_rate' and values and min(values) > 0 and \
                    max(values) > 10 * min(values):
                ax.set_yscale('log')
            ax.set_title(title)
            ax.set_xlabel('epoch')
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if len(names) > 1:
                ax.legend()
        if path is not None:
            fig.savefig(path)
        return fig
