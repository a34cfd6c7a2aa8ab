"""Estimator: Gluon's fit/evaluate loops driven by event handlers.

Example::

    from xpnet import layers as nn
    from xpnet.estimator import Estimator
    from xpnet.handlers import CheckpointHandler, EarlyStoppingHandler

    net = nn.Sequential(); net.add(nn.Dense(64, activation='relu'), nn.Dense(10))
    net.initialize(init='xavier')
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    history = est.fit(train_loader, val_loader, epochs=20, event_handlers=[
        CheckpointHandler('runs/ckpt', resume_from_checkpoint=True),
        EarlyStoppingHandler(monitor=est.val_metrics[0], patience=3)])
    history['validation accuracy']
"""
import collections.abc
import copy
import logging
import numbers
import sys
import time
import warnings

from .. import autograd
from ..backend import Context, cpu, gpu, is_array, num_gpus
from ..ndarray import NDArray
from ._state import (capture_random_state, join_arrays, restore_random_state,
                     split_arrays)
from .batch_processor import BatchProcessor
from .event_handler import categorize_handlers, check_event_handlers, sort_handlers
from .history import History
from .progress import Progress

__all__ = ['Estimator']

_TRAIN, _VAL = 'training ', 'validation '


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (so redirections of
    stdout, e.g. pytest's capture or ``contextlib.redirect_stdout``, are honoured)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _make_logger():
    # One Logger object per estimator, not registered with logging's manager: handlers a
    # user adds to one estimator's logger never show up on another's, and creating many
    # estimators never piles up handlers.
    logger = logging.Logger('xpnet.estimator', level=logging.INFO)
    logger.addHandler(_StdoutHandler())
    return logger


def _check_count(value, argument):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f'{argument} must be a positive integer, got {value!r}')
    if value <= 0:
        raise ValueError(f'{argument} must be a positive integer, got {value}')
    return int(value)


def _check_loader(data, argument):
    """Reject what cannot be a loader of (data, label) batches, naming the argument."""
    if isinstance(data, NDArray) or is_array(data):
        raise ValueError(
            f'{argument} must be a DataLoader (or another iterable of (data, label) batches), '
            f'got a bare {type(data).__name__} of shape {tuple(data.shape)}; wrap it, e.g. '
            f'DataLoader(ArrayDataset(data, label), batch_size=32)')
    if isinstance(data, (str, bytes)) or not isinstance(data, collections.abc.Iterable):
        raise ValueError(f'{argument} must be a DataLoader (or another iterable of '
                         f'(data, label) batches), got {type(data).__name__} which is not '
                         'iterable')
    if isinstance(data, (list, tuple)) and data and not (
            isinstance(data[0], (list, tuple)) and len(data[0]) >= 2):
        first = data[0]
        what = f'{type(first).__name__}' + (f' of shape {tuple(first.shape)}'
                                            if hasattr(first, 'shape') else '')
        raise ValueError(
            f'{argument} must yield (data, label) pairs, but it is a {type(data).__name__} '
            f'whose first element is a {what} (a bare list of arrays?); wrap arrays in a '
            f'DataLoader, e.g. DataLoader(ArrayDataset(data, label), batch_size=32)')


def batch_size_of(loss):
    """Number of samples in a batch: the summed first-axis length of the per-device
    losses (Gluon's rule; a loss has one value per sample)."""
    n = 0
    for l in loss:
        shape = getattr(l, 'shape', ())
        n += shape[0] if len(shape) else 1
    return n


def _metric_values(metrics):
    out = {}
    for m in metrics:
        name, value = m.get()
        if isinstance(name, (list, tuple)):
            out.update(zip(name, value))
        else:
            out[name] = value
    return out


class Estimator:
    """Trains and evaluates a network with event handlers (Gluon's Estimator).

    Args:
        net: the Block to train.
        loss: an ``xpnet.loss.Loss`` (the training objective).
        train_metrics: an EvalMetric, a list of them (or metric names). Default: accuracy
            for ``SoftmaxCrossEntropyLoss`` and the mean loss. Their names get the prefix
            ``'training '`` (``'training accuracy'``), as in Gluon.
        val_metrics: validation metrics; default: copies of the training metrics, named
            ``'validation ...'``.
        initializer: used when ``net`` is not initialized yet (default: the default
            initializer). A net already initialized is left alone, with a warning if an
            initializer is given too.
        trainer: an ``xpnet.Trainer``; default SGD with learning rate 0.001 (Gluon's).
        context: a Context or a list of them; default: the net's context if initialized,
            else ``gpu(0)`` when a GPU exists, else ``cpu()``. Batches are split across
            the list with ``split_and_load``.
        val_net: network used for validation (default ``net``), e.g. one sharing its
            parameters.
        val_loss: loss used for validation (default ``loss``).
        batch_processor: a :class:`BatchProcessor` (``fit_batch``/``evaluate_batch``).

    Attributes:
        logger: a ``logging.Logger`` of this estimator writing INFO to stdout; configure
            it with the logging API (``est.logger.addHandler(logging.FileHandler(f))``,
            ``est.logger.setLevel(logging.WARNING)``).
        progress: the :class:`Progress` counters of the current or last ``fit`` (the one
            place epochs, batches and samples are counted).
        eval_progress: the counters of the current or last ``evaluate`` pass.
        history: the :class:`History` of the current or last ``fit``.
        stop_training: set to True (by a handler) to stop after the current batch.
        exception: the exception that ended the last ``fit``, or None.
        evaluating: True while ``evaluate`` runs (also when called during ``fit``).
        validated_this_epoch: True once ``evaluate`` has run in the current epoch.
        max_epoch, max_batch, batch_axis, train_data, event_handlers: the arguments of the
            current ``fit`` (handlers sorted by priority, defaults included).
    """

    logger = None

    def __init__(self, net, loss, train_metrics=None, val_metrics=None, initializer=None,
                 trainer=None, context=None, val_net=None, val_loss=None,
                 batch_processor=None):
        from ..layers import Block
        if not isinstance(net, Block):
            raise ValueError(f'net must be an xpnet Block, got {type(net).__name__}')
        self.net = net
        self.loss = self._check_loss(loss, 'loss')
        self.val_loss = self.loss if val_loss is None else self._check_loss(val_loss, 'val_loss')
        if val_net is not None and not isinstance(val_net, Block):
            raise ValueError(f'val_net must be an xpnet Block, got {type(val_net).__name__}')
        self.val_net = net if val_net is None else val_net
        self._train_metrics = self._check_metrics(train_metrics, 'train_metrics')
        self._val_metrics = self._check_metrics(val_metrics, 'val_metrics')
        self._add_default_training_metrics()
        self._add_validation_metrics()
        self.logger = _make_logger()
        self.context = self._check_context(context)
        self._initialize(initializer)
        self.trainer = self._check_trainer(trainer)
        self.batch_processor = self._check_batch_processor(batch_processor)

        self.max_epoch = None
        self.max_batch = None
        self.batch_axis = 0
        self.train_data = None
        self.event_handlers = []
        self.progress = Progress()
        self.eval_progress = Progress()
        self.history = History()
        self.stop_training = False
        self.exception = None
        self.evaluating = False
        self.validated_this_epoch = False
        self._after_event = []
        self._in_train_begin = False
        self._pending_handler_states = None
        self._pending_metric_states = None
        self._epoch_start = None
        self._progress_bar = None     # LoggingHandler's tqdm bar while an epoch runs

    # ---- construction checks ----------------------------------------------------------------
    @staticmethod
    def _check_loss(loss, argument):
        from .. import loss as _loss
        base = getattr(_loss, 'Loss', None)
        if base is None or not isinstance(loss, base):
            raise ValueError(f'{argument} must be an xpnet.loss.Loss (e.g. '
                             f'SoftmaxCrossEntropyLoss()), got {type(loss).__name__}')
        return loss

    @staticmethod
    def _check_metrics(metrics, argument):
        from .. import metric as _metric
        if metrics is None:
            return []
        items = metrics if isinstance(metrics, (list, tuple)) else [metrics]
        out = []
        for m in items:
            if isinstance(m, str):
                m = _metric.create(m)
            composite = getattr(_metric, 'CompositeEvalMetric', None)
            if composite is not None and isinstance(m, composite):
                out.extend(Estimator._check_metrics(list(m.metrics), argument))
            elif isinstance(m, _metric.EvalMetric):
                out.append(m)
            else:
                raise ValueError(f'{argument} must be an EvalMetric or a list of them '
                                 f'(xpnet.metric), got {type(m).__name__}: {m!r}')
        return out

    def _add_default_training_metrics(self):
        from .. import loss as _loss, metric as _metric
        if not self._train_metrics:
            sce = getattr(_loss, 'SoftmaxCrossEntropyLoss', None)
            if sce is not None and isinstance(self.loss, sce):
                self._train_metrics.append(_metric.Accuracy())
            loss_name = getattr(self.loss, 'name', None) or type(self.loss).__name__.lower()
            self._train_metrics.append(_metric.Loss(name=loss_name.rstrip('0123456789')))
        for m in self._train_metrics:
            if not m.name.startswith(_TRAIN):
                m.name = _TRAIN + m.name

    def _add_validation_metrics(self):
        if not self._val_metrics:
            self._val_metrics = [copy.deepcopy(m) for m in self._train_metrics]
            for m in self._val_metrics:
                m.reset()
        for m in self._val_metrics:
            if any(m is t for t in self._train_metrics):
                raise ValueError(f'metric {m.name!r} is given both as a training and as a '
                                 'validation metric; pass separate metric objects')
            if m.name.startswith(_TRAIN):
                m.name = _VAL + m.name[len(_TRAIN):]
            elif not m.name.startswith(_VAL):
                m.name = _VAL + m.name

    def _check_context(self, context):
        if context is None:
            for p in self.net.collect_params().values():
                try:
                    return list(p.list_ctx())
                except RuntimeError:
                    continue
            n = num_gpus()
            if n > 1:
                warnings.warn('You have several GPUs, gpu(0) is used by default; pass '
                              'context=[xpnet.gpu(0), xpnet.gpu(1), ...] to use them all.')
            return [gpu(0)] if n else [cpu()]
        if isinstance(context, Context):
            return [context]
        if isinstance(context, (list, tuple)) and context and \
                all(isinstance(c, Context) for c in context):
            return list(context)
        raise ValueError('context must be a Context or a non-empty list of them, e.g. '
                         f'xpnet.cpu() or [xpnet.gpu(0), xpnet.gpu(1)]; got {context!r}')

    def _is_initialized(self):
        for p in self.net.collect_params().values():
            try:
                p.list_ctx()
            except RuntimeError:
                return False
        return True

    def _initialize(self, initializer):
        if not self._is_initialized():
            with warnings.catch_warnings():
                # a partly initialized net: the initialized parameters are kept as they are
                warnings.filterwarnings('ignore', message='.*already initialized.*')
                self.net.initialize(init=initializer, ctx=self.context)
        elif initializer is not None:
            warnings.warn('Network already fully initialized, skipping initialization. You '
                          "don't need to pass an initializer if you already initialized your "
                          'net; use net.initialize(init=..., force_reinit=True) to '
                          're-initialize it.', stacklevel=3)

    def _check_trainer(self, trainer):
        from ..trainer import Trainer
        if trainer is None:
            warnings.warn('No trainer specified, default SGD optimizer with learning rate '
                          '0.001 is used.', stacklevel=3)
            return Trainer(self.net.collect_params(), 'sgd', {'learning_rate': 0.001})
        if not isinstance(trainer, Trainer):
            raise ValueError(f'trainer must be an xpnet.Trainer, got {type(trainer).__name__}')
        return trainer

    @staticmethod
    def _check_batch_processor(batch_processor):
        if batch_processor is None:
            return BatchProcessor()
        if not callable(getattr(batch_processor, 'fit_batch', None)) or \
                not callable(getattr(batch_processor, 'evaluate_batch', None)):
            raise ValueError('batch_processor must have fit_batch() and evaluate_batch() '
                             f'methods, got {type(batch_processor).__name__}')
        return batch_processor

    @property
    def train_metrics(self):
        return self._train_metrics

    @property
    def val_metrics(self):
        return self._val_metrics

    # ---- batches --------------------------------------------------------------------------
    def fit_batch(self, train_batch, batch_axis=0):
        """One training batch: delegates to ``self.batch_processor.fit_batch``."""
        return self.batch_processor.fit_batch(self, train_batch, batch_axis)

    def evaluate_batch(self, val_batch, batch_axis=0):
        """One validation batch: delegates to ``self.batch_processor.evaluate_batch``."""
        return self.batch_processor.evaluate_batch(self, val_batch, batch_axis)

    # ---- evaluate -------------------------------------------------------------------------
    def evaluate(self, val_data, batch_axis=0, event_handlers=None):
        """Evaluate ``val_net`` on ``val_data`` and update ``val_metrics``.

        A MetricHandler and a LoggingHandler for the validation metrics are added unless
        ``event_handlers`` holds one of that kind. Handlers get ``epoch_begin``,
        ``batch_begin``, ``batch_end`` and ``epoch_end`` (no train events).

        Args:
            val_data: a DataLoader (or iterable) of ``(data, label)`` batches.
            batch_axis: the axis along which batches are split across devices.
            event_handlers: a handler or a list of them.

        Returns:
            ``{metric name: value}`` of the validation metrics.
        """
        _check_loader(val_data, 'val_data')
        handlers = self._prepare_validation_handlers(event_handlers)
        events = categorize_handlers(handlers)
        for m in self.val_metrics:
            m.reset()
        previous = self.evaluating
        self.evaluating = True
        self.eval_progress = Progress()
        try:
            with autograd.pause(train_mode=False):
                self._call(events['epoch_begin'], 'epoch_begin')
                for batch in val_data:
                    self._call(events['batch_begin'], 'batch_begin', batch=batch)
                    data, label, pred, loss = self.evaluate_batch(batch, batch_axis)
                    self.eval_progress.complete_batch(batch_size_of(loss))
                    self._call(events['batch_end'], 'batch_end', batch=batch, pred=pred,
                               label=label, loss=loss)
                self.eval_progress.complete_epoch()
                self._call(events['epoch_end'], 'epoch_end')
        finally:
            self.evaluating = previous
        self.validated_this_epoch = True
        return _metric_values(self.val_metrics)

    # ---- fit ------------------------------------------------------------------------------
    def fit(self, train_data, val_data=None, epochs=None, event_handlers=None, batches=None,
            batch_axis=0):
        """Train for ``epochs`` epochs or ``batches`` batches (exactly one of them).

        StoppingHandler, GradientUpdateHandler, MetricHandler, LoggingHandler (and
        ValidationHandler when ``val_data`` is given) are added unless ``event_handlers``
        holds one of that kind; handlers run in ascending ``priority``. If a handler
        raises, training stops, every ``train_end`` handler still runs and the exception
        propagates. A non-finite loss stops training with ``FloatingPointError`` before
        that batch's update is applied.

        Args:
            train_data: a DataLoader (or iterable) of ``(data, label)`` batches.
            val_data: validation batches, evaluated at each epoch end by default.
            epochs: number of epochs to train (counting epochs resumed from a checkpoint).
            event_handlers: a handler or a list of them.
            batches: number of batches to train instead of epochs.
            batch_axis: the axis along which batches are split across devices.

        Returns:
            the :class:`History` of this run (also ``self.history``).
        """
        _check_loader(train_data, 'train_data')
        if val_data is not None:
            _check_loader(val_data, 'val_data')
        if (epochs is None) == (batches is None):
            raise ValueError('fit needs exactly one of epochs or batches, got '
                             f'epochs={epochs!r} and batches={batches!r}')
        epochs = _check_count(epochs, 'epochs')
        batches = _check_count(batches, 'batches')
        if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
            raise ValueError(f'batch_axis must be an integer, got {batch_axis!r}')
        self.max_epoch, self.max_batch, self.batch_axis = epochs, batches, batch_axis
        handlers = self._prepare_default_handlers(val_data, event_handlers)
        events = categorize_handlers(handlers)

        self.train_data = train_data
        self.event_handlers = handlers
        self.progress = Progress(epochs, batches)
        self.history = History()
        self.stop_training = False
        self.exception = None
        self._after_event = []
        self._pending_handler_states = self._pending_metric_states = None
        try:
            self._in_train_begin = True
            try:
                self._call(events['train_begin'], 'train_begin')
            finally:
                self._in_train_begin = False
            if self._pending_handler_states is not None:
                self._load_handler_states(*self._pending_handler_states)
                self._pending_handler_states = None
            self._flush_after_event()
            while not self.stop_training and not self.progress.limit_reached():
                self._fit_epoch(train_data, events, batch_axis)
        except BaseException as err:
            self._after_event = []
            self._end_training(events, err)
            raise
        self._end_training(events, None)
        return self.history

    def _fit_epoch(self, train_data, events, batch_axis):
        progress = self.progress
        self._epoch_start = time.perf_counter()
        self.validated_this_epoch = False
        self._call(events['epoch_begin'], 'epoch_begin')
        self._flush_after_event()
        if self._pending_metric_states is not None:
            self._load_metric_states(self.train_metrics, *self._pending_metric_states)
            self._pending_metric_states = None
        batch_begin, batch_end = events['batch_begin'], events['batch_end']
        for batch in train_data:
            if batch_begin:
                self._call(batch_begin, 'batch_begin', batch=batch)
            data, label, pred, loss = self.fit_batch(batch, batch_axis)
            self._check_finite(loss)
            progress.complete_batch(batch_size_of(loss))
            stop = self._call(batch_end, 'batch_end', batch=batch, pred=pred, label=label,
                              loss=loss)
            if self._after_event:
                self._flush_after_event()
            if stop or self.stop_training:
                self.stop_training = True
                break
        if progress.epoch_batches == 0:
            raise ValueError('train_data yielded no batches in epoch '
                             f'{progress.epoch}; is the dataset empty?')
        progress.complete_epoch()
        stop = self._call(events['epoch_end'], 'epoch_end')
        self._record_history()
        progress.start_next_epoch()
        self._flush_after_event()
        if stop:
            self.stop_training = True

    def _call(self, handlers, event, **kwargs):
        stop = False
        for handler in handlers:
            if getattr(handler, event)(self, **kwargs):
                stop = True
        return stop

    def after_event(self, fn):
        """Run ``fn()`` once every handler of the current event has run (and, at an epoch
        end, once the epoch is counted as done). ``CheckpointHandler`` uses it so that a
        checkpoint holds the state all handlers leave, whatever their order."""
        self._after_event.append(fn)

    def _flush_after_event(self):
        while self._after_event:
            self._after_event.pop(0)()

    def _check_finite(self, loss):
        for l in loss:
            if not isinstance(l, NDArray):
                continue
            with l.context.use():
                finite = bool(l.xp.isfinite(l.data).all())
            if not finite:
                p = self.progress
                raise FloatingPointError(
                    f'non-finite training loss in epoch {p.epoch}, batch {p.epoch_batches} '
                    f'(batch {p.batches + 1} of the run): training stopped before applying '
                    "this batch's update, so the weights and every checkpoint stay finite. "
                    'Lower the learning rate, clip gradients or check the data for NaN/inf.')

    def _record_history(self):
        values = _metric_values(self.train_metrics)
        if self.validated_this_epoch:
            values.update(_metric_values(self.val_metrics))
        values['learning_rate'] = self.trainer.learning_rate
        values['epoch_time'] = time.perf_counter() - self._epoch_start
        self.history.record(self.progress.epoch, values)

    def _end_training(self, events, error):
        self.exception = error
        first = None
        for handler in events['train_end']:
            try:
                handler.train_end(self)
            except Exception as err:   # the others must still run: they close files
                if error is not None:
                    self.logger.error('%s.train_end failed while training was stopping on '
                                      '%r: %r', type(handler).__name__, error, err)
                elif first is None:
                    first = err
        if first is not None:
            raise first

    # ---- handlers -------------------------------------------------------------------------
    def _prepare_default_handlers(self, val_data, event_handlers):
        from .. import handlers as H
        handlers = check_event_handlers(event_handlers)

        def missing(kind):
            return not any(isinstance(h, kind) for h in handlers)

        added = []
        if missing(H.StoppingHandler):
            added.append(H.StoppingHandler(self.max_epoch, self.max_batch))
        if missing(H.GradientUpdateHandler):
            added.append(H.GradientUpdateHandler())
        if missing(H.MetricHandler):
            added.append(H.MetricHandler(metrics=self.train_metrics))
        if val_data is not None and missing(H.ValidationHandler):
            added.append(H.ValidationHandler(val_data=val_data, eval_fn=self.evaluate))
        if missing(H.LoggingHandler):
            added.append(H.LoggingHandler())
        handlers = handlers + added
        self._check_monitors(handlers)
        return sort_handlers(handlers)

    def _prepare_validation_handlers(self, event_handlers):
        from .. import handlers as H
        handlers = check_event_handlers(event_handlers)
        if not any(isinstance(h, H.MetricHandler) for h in handlers):
            handlers.append(H.MetricHandler(metrics=self.val_metrics))
        if not any(isinstance(h, H.LoggingHandler) for h in handlers):
            handlers.append(H.LoggingHandler(metrics=self.val_metrics))
        return sort_handlers(handlers)

    def _check_monitors(self, handlers):
        known = self.train_metrics + self.val_metrics
        for h in handlers:
            monitor = getattr(h, 'monitor', None)
            if monitor is not None and not any(monitor is m for m in known):
                names = ', '.join(repr(m.name) for m in known)
                raise ValueError(
                    f'{type(h).__name__}: monitor {getattr(monitor, "name", monitor)!r} is not '
                    'a metric of this estimator; pass one of estimator.train_metrics or '
                    f'estimator.val_metrics ({names})')

    def _stateful_handlers(self):
        seen = {}
        for h in self.event_handlers:
            if callable(getattr(h, 'state_dict', None)) and \
                    callable(getattr(h, 'load_state_dict', None)):
                kind = type(h).__name__
                i = seen.get(kind, 0)
                seen[kind] = i + 1
                yield (kind if i == 0 else f'{kind}#{i}'), h

    # ---- training state (for checkpoints) ---------------------------------------------------
    def training_state(self):
        """Everything besides parameters and trainer needed to continue this run exactly.

        Returns:
            ``(meta, arrays)``: a JSON-able dict (progress, random states, the loader's
            position within an unfinished epoch, metric states, history, the state of every
            handler with ``state_dict()``) and the host arrays it refers to.
        """
        arrays = {}
        loader_state = None
        # also between epochs: a loader may carry state into the next epoch (rollover)
        if callable(getattr(self.train_data, 'state_dict', None)):
            loader_state = split_arrays(self.train_data.state_dict(), 'loader', arrays)
        meta = {
            'progress': self.progress.state_dict(),
            'random': split_arrays(capture_random_state(), 'random', arrays),
            'loader': loader_state,
            'train_metrics': split_arrays(self._metric_states(self.train_metrics),
                                          'train_metrics', arrays),
            'val_metrics': split_arrays(self._metric_states(self.val_metrics),
                                        'val_metrics', arrays),
            'history': self.history.state_dict(),
            'handlers': {key: split_arrays(h.state_dict(), f'handlers/{key}', arrays)
                         for key, h in self._stateful_handlers()},
        }
        return meta, arrays

    def load_training_state(self, meta, arrays):
        """Continue the run saved by :meth:`training_state` (call it from ``train_begin``).

        Progress, random states, history and the loader position apply at once; handler
        states apply once every ``train_begin`` handler has run (so their fresh-run setup
        does not wipe them), and training metric states after the first ``epoch_begin``.
        """
        self.progress.load_state_dict(meta['progress'])
        restore_random_state(join_arrays(meta['random'], arrays))
        self.history.load_state_dict(meta['history'])
        loader_state = meta.get('loader')
        can_load = callable(getattr(self.train_data, 'load_state_dict', None))
        if loader_state is not None and can_load:
            self.train_data.load_state_dict(join_arrays(loader_state, arrays))
        if self.progress.mid_epoch:
            if loader_state is None or not can_load:
                self.logger.warning(
                    'the checkpoint was taken after batch %d of epoch %d but train_data '
                    '(%s) cannot restore its position (no state_dict/load_state_dict): '
                    'epoch %d restarts from its first batch', self.progress.epoch_batches,
                    self.progress.epoch, type(self.train_data).__name__, self.progress.epoch)
                self.progress.epoch_batches = self.progress.epoch_samples = 0
            else:
                self._pending_metric_states = (meta.get('train_metrics'), arrays)
        self._load_metric_states(self.val_metrics, meta.get('val_metrics'), arrays)
        states = (meta.get('handlers', {}), arrays)
        if self._in_train_begin:
            self._pending_handler_states = states
        else:
            self._load_handler_states(*states)

    @staticmethod
    def _metric_states(metrics):
        return [m.state_dict() if callable(getattr(m, 'state_dict', None)) else None
                for m in metrics]

    @staticmethod
    def _load_metric_states(metrics, states, arrays):
        if not states:
            return
        for m, s in zip(metrics, join_arrays(states, arrays)):
            if s is not None and callable(getattr(m, 'load_state_dict', None)):
                m.load_state_dict(s)

    def _load_handler_states(self, states, arrays):
        for key, h in self._stateful_handlers():
            if key in states:
                h.load_state_dict(join_arrays(states[key], arrays))
                # e.g. an EarlyStoppingHandler that had already stopped the saved run
                if getattr(h, 'stop_training', False) is True:
                    self.stop_training = True
