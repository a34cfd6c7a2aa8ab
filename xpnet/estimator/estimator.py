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
import contextlib
import logging
import sys
import time

from .. import autograd
from .. import distributed as dist
from .._events import (batch_size_of, categorize_handlers, check_event_handlers, is_stateful,
                       sort_handlers)
from ..data.prefetch import prefetch_to_devices, prefetches
from ..ndarray import NDArray
from . import _checks
from . import _distributed
from ._finite import FiniteGuard
from ._state import RandomTracker, ResumePoint
from ._training_state import TrainingStateMixin
from .batch_processor import BatchProcessor
from .history import History
from .progress import Progress

__all__ = ['Estimator']


def _stops_on_local_grounds(events):
    """True if a handler outside xpnet's own runs at ``epoch_begin``, ``batch_begin`` or
    ``batch_end``: it may stop training on this rank's data alone. (xpnet's handlers stop
    on progress counters or global metric values, the same on every rank.)"""
    return any(not type(h).__module__.startswith('xpnet.')
               for event in ('epoch_begin', 'batch_begin', 'batch_end')
               for h, _, _ in events[event])


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


class Estimator(TrainingStateMixin):
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
        trainer: an ``xpnet.Trainer``; default SGD with learning rate 0.001 (Gluon's),
            with ``kvstore='dist_sync'`` under MPI. Under MPI a trainer must reduce
            gradients across the ranks (``kvstore='dist_sync'``): ``ValueError`` otherwise.
        context: a Context or a list of them; default: the net's context if initialized,
            else ``gpu(0)`` when a GPU exists, else ``cpu()`` (under MPI:
            ``xpnet.distributed.default_context()``, this rank's GPU). Batches are split
            across the list with ``split_and_load``.
        val_net: network used for validation (default ``net``), e.g. one sharing its
            parameters.
        val_loss: loss used for validation (default ``loss``).
        batch_processor: a :class:`BatchProcessor` (``fit_batch``/``evaluate_batch``).
        amp: mixed precision (:mod:`xpnet.amp`) for this estimator's ``fit``, ``evaluate``
            and ``lr_find``: ``True`` (or ``'float16'``; ``'bfloat16'`` where the array
            module has it) turns AMP on while they run (and off after, unless
            ``amp.init()`` turned it on for the whole process) and attaches a dynamic loss
            scaler to the trainer, whose state checkpoints keep. Default False: the
            process-wide setting applies (a trainer given ``amp.init_trainer`` still has
            its losses scaled).

    On a device context (a GPU, or several) the Estimator copies the next batch's data
    and label to the devices while the current batch trains (see
    :func:`xpnet.data.prefetch_to_devices`; with ``DataLoader(pin_memory=True)`` the copy
    is fully asynchronous), when ``batch_processor`` uses :class:`BatchProcessor`'s own
    ``fit_batch``/``evaluate_batch``. A ``batch_begin`` handler must then not change the
    batch's arrays in place: their device copy is already made.

    Under MPI (``mpiexec -n N``, see ``docs/distributed.md``) every rank runs ``fit`` on
    its shard of the data: only rank 0 logs and writes files (:attr:`is_writer`), metric
    values are those of all ranks' data (:meth:`metric_value`), every rank stops at the
    same batch, and checkpoints resume every rank exactly.

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
        exception_on_every_rank: with ``exception`` set, True when every rank of the job
            raised it at the same point (the Estimator's own agreed checks, e.g. a
            non-finite loss on some rank; always True in a single process). Only then may
            ``train_end`` handlers communicate: after an exception of one rank alone the
            others are elsewhere, and a collective would wait for them forever.
        amp: the AMP type name (``'float16'``) when ``amp`` was given, else None.
        training: True while ``fit`` runs.
        evaluating: True while ``evaluate`` runs (also when called during ``fit``).
        validated_this_epoch: True once ``evaluate`` has run in the current epoch.
        progress_bar: a progress bar on the terminal (``LoggingHandler`` sets it), or None;
            :meth:`log` clears it around each log line.
        max_epoch, max_batch, batch_axis, train_data, event_handlers: the arguments of the
            current ``fit`` (handlers sorted by priority, defaults included).
    """

    logger = None

    def __init__(self, net, loss, train_metrics=None, val_metrics=None, initializer=None,
                 trainer=None, context=None, val_net=None, val_loss=None,
                 batch_processor=None, amp=False):
        from ..layers import Block
        if not isinstance(net, Block):
            raise ValueError(f'net must be an xpnet Block, got {type(net).__name__}')
        self.net = net
        self.loss = _checks.check_loss(loss, 'loss')
        self.val_loss = self.loss if val_loss is None else _checks.check_loss(val_loss,
                                                                              'val_loss')
        if val_net is not None and not isinstance(val_net, Block):
            raise ValueError(f'val_net must be an xpnet Block, got {type(val_net).__name__}')
        self.val_net = net if val_net is None else val_net
        self._train_metrics = _checks.default_metrics(
            _checks.check_metrics(train_metrics, 'train_metrics'), self.loss)
        self._val_metrics = _checks.validation_metrics(
            _checks.check_metrics(val_metrics, 'val_metrics'), self._train_metrics)
        self.logger = _make_logger()
        self._rank, self._ranks = dist.rank(), dist.size()
        self.context = _checks.check_context(context, net, self._ranks)
        if _checks.initialize_net(net, initializer, self.context) and self._ranks > 1:
            dist.broadcast_parameters(net.collect_params())   # every rank starts alike
        self.trainer = _checks.check_trainer(trainer, net, self._ranks)
        self.batch_processor = _checks.check_batch_processor(batch_processor)
        self.amp = _checks.check_amp(amp, self.trainer, self.context)

        self.max_epoch = self.max_batch = self.train_data = None
        self.batch_axis = 0
        self.event_handlers = []
        self.progress = Progress()
        self.eval_progress = Progress()
        self.history = History()
        self.stop_training = False
        self.exception = None
        self.exception_on_every_rank = True
        self.training = self.evaluating = self.validated_this_epoch = False
        self.progress_bar = None
        self._dispatches = 0                # handler calls so far: metric reads within
        self._global_metrics = None         # one reuse one reduction across the ranks
        if self._ranks > 1:
            self._global_metrics = _distributed.GlobalMetrics(
                lambda msg: self.log(msg, level=logging.WARNING))
        self._agree_every_batch = False     # a handler may stop on rank-local grounds
        self._error_on_every_rank = False
        self._ending = False                # train_end handlers are running
        self._warned_unsharded = False
        self._after_event = []
        self._in_train_begin = False
        self._pending_handler_states = self._pending_metric_states = None
        self._epoch_start = None
        self._resume_point = None
        self._random_tracker = RandomTracker()
        self._epoch_batches_done = False    # resumed after the epoch's last batch

    @property
    def train_metrics(self):
        return self._train_metrics

    @property
    def val_metrics(self):
        return self._val_metrics

    # ---- hooks for handlers (one place each; distributed training specializes them) -----
    @property
    def is_writer(self):
        """True in the process that writes files and logs: rank 0 of a distributed run
        (every other rank leaves it to rank 0), and a single process. Handlers that write
        check it."""
        return self._rank == 0

    def metric_value(self, metric, local=False):
        """``(name, value)`` of ``metric`` as ``metric.get()`` gives it; the one place
        handlers read metric values.

        Under MPI the value is that of every rank's data (each rank's statistics are
        gathered and merged: :meth:`~xpnet.metric.EvalMetric.merged`), the same on every
        rank, so decisions taken on it (early stopping, the best checkpoint) agree. That
        makes the call a collective: call it on every rank at the same point (in a handler:
        before any ``if estimator.is_writer:``). Reads within one handler call share one
        reduction of all the estimator's metrics.

        Args:
            metric: an EvalMetric.
            local: this process's own value, without communicating (e.g. for a progress
                bar refreshed at times that differ by rank).
        """
        return self._metric_pairs([metric], local)[0]

    def metric_values(self, metrics, local=False):
        """``{name: value}`` of ``metrics`` (a metric with several names gives several);
        see :meth:`metric_value`."""
        out = {}
        for name, value in self._metric_pairs(metrics, local):
            if isinstance(name, (list, tuple)):
                out.update(zip(name, value))
            else:
                out[name] = value
        return out

    def _metric_pairs(self, metrics, local=False):
        """``[(name, value)]`` of ``metrics``, in order."""
        metrics = list(metrics)
        if local or self._global_metrics is None:
            return [m.get() for m in metrics]
        # reuse a reduction only inside fit/evaluate, where every rank calls alike
        inside = self.training or self.evaluating or self._ending
        key = self._dispatches if inside else None
        return self._global_metrics.values(metrics, self._known_metrics(), key)

    def _known_metrics(self):
        from ..handlers import MetricHandler
        known = list(self.train_metrics) + list(self.val_metrics)
        for h in self.event_handlers:
            if isinstance(h, MetricHandler):
                known.extend(h.metrics)
        return known

    def log(self, msg, *args, level=logging.INFO):
        """Log through :attr:`logger`, clearing :attr:`progress_bar` (if any) first and
        drawing it again below the line. Only the writing process (:attr:`is_writer`)
        logs: in a distributed run, rank 0."""
        if not self.is_writer:
            return
        bar = self.progress_bar
        if bar is not None:
            bar.clear()
        self.logger.log(level, msg, *args)
        if bar is not None:
            bar.refresh()

    @property
    def resume_point(self):
        """The last consistent state of the running (or last) ``fit`` that training could
        continue from exactly, as a :class:`~xpnet.estimator._state.ResumePoint`: after the
        last batch (or epoch) whose handlers all ran, while no handler has changed the
        training state since. None when there is none (e.g. training stopped inside a
        ``batch_end`` handler, after the batch's update)."""
        point = self._resume_point
        if point is None or not point.valid or point.num_update != self._num_update():
            return None
        random = self._random_tracker.complete(point.random)
        if random is None:       # NumPy's or Python's stream moved: its state is unknown
            return None
        point.random = random
        return point

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
        _checks.check_loader(val_data, 'val_data')
        events = categorize_handlers(self._prepare_validation_handlers(event_handlers))
        for m in self.val_metrics:
            m.reset()
        previous = self.evaluating
        self.evaluating = True
        self.eval_progress = Progress()
        try:
            with autograd.pause(train_mode=False), self._amp_scope():
                self._call(events['epoch_begin'])
                for batch in self._device_batches(
                        self._validation_batches(val_data, batch_axis), batch_axis,
                        'evaluate_batch'):
                    self._call(events['batch_begin'], batch=batch)
                    data, label, pred, loss = self.evaluate_batch(batch, batch_axis)
                    self.eval_progress.complete_batch(batch_size_of(loss))
                    self._call(events['batch_end'], batch=batch, pred=pred, label=label,
                               loss=loss)
                self.eval_progress.complete_epoch()
                self._call(events['epoch_end'])
        finally:
            self.evaluating = previous
        self.validated_this_epoch = True
        self._dispatches += 1
        return self.metric_values(self.val_metrics)

    def _validation_batches(self, val_data, batch_axis):
        """``val_data``'s batches; under MPI without ``SplitSampler``'s padded duplicates
        (see ``_distributed.validation_batches``)."""
        if self._ranks == 1:
            return val_data
        if _distributed.unsharded(val_data) and not self._warned_unsharded:
            self._warned_unsharded = True
            self.log('val_data is not sharded across the %d ranks, so every rank evaluates '
                     'all of it (the metrics are right, the work is repeated); give its '
                     'DataLoader sampler=xpnet.data.SplitSampler(len(dataset)) to split it',
                     self._ranks, level=logging.WARNING)
        return _distributed.validation_batches(val_data, batch_axis)

    # ---- fit ------------------------------------------------------------------------------
    def fit(self, train_data, val_data=None, epochs=None, event_handlers=None, batches=None,
            batch_axis=0):
        """Train for ``epochs`` epochs or ``batches`` batches (exactly one of them).

        StoppingHandler, GradientUpdateHandler, MetricHandler, LoggingHandler (and
        ValidationHandler when ``val_data`` is given) are added unless ``event_handlers``
        holds one of that kind; handlers run in ascending ``priority``. If a handler
        raises, or training is interrupted (Ctrl+C), training stops, every ``train_end``
        handler still runs (a CheckpointHandler then saves the last completed batch) and
        the exception propagates. A non-finite loss stops training with
        ``FloatingPointError`` before that batch's update is applied; on a device the
        update is skipped there, and the error is raised at the next read-back (a metric
        value, a checkpoint) or at the end of the epoch (see ``estimator/_finite.py``).

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
        self._check_fit_arguments(train_data, val_data, epochs, batches, batch_axis)
        self.max_epoch = _checks.check_count(epochs, 'epochs')
        self.max_batch = _checks.check_count(batches, 'batches')
        self.batch_axis = batch_axis
        handlers = self._prepare_default_handlers(val_data, event_handlers)
        events = categorize_handlers(handlers)
        self.train_data = train_data
        self.event_handlers = handlers
        self.progress = Progress(self.max_epoch, self.max_batch)
        self.history = History()
        self.stop_training = False
        self.exception = self._resume_point = None
        self.exception_on_every_rank = True
        self._error_on_every_rank = False
        self._agree_every_batch = self._ranks > 1 and _stops_on_local_grounds(events)
        if self._ranks > 1 and _distributed.unsharded(train_data):
            self.log('train_data is not sharded across the %d ranks: every rank trains on '
                     'batches of the whole data set, repeating work; give its DataLoader '
                     'sampler=xpnet.data.SplitSampler(len(dataset), shuffle=True) and a '
                     'batch_size of the global batch / %d', self._ranks, self._ranks,
                     level=logging.WARNING)
        self._random_tracker = RandomTracker()
        self._epoch_batches_done = False
        self._after_event = []
        self._pending_handler_states = self._pending_metric_states = None
        self.training = True
        self._finite_guard = FiniteGuard(self)
        try:
            with self._amp_scope():
                self._begin_training(events)
                self._finite_guard.remember(self)
                while not self.stop_training and not self.progress.limit_reached():
                    self._fit_epoch(train_data, events, batch_axis)
        except BaseException as err:
            self._after_event = []
            self._finite_guard.rewind(self, err)
            self._finite_guard.close(self)
            self._end_training(events, err)
            raise
        self._finite_guard.close(self)
        self._end_training(events, None)
        return self.history

    @staticmethod
    def _check_fit_arguments(train_data, val_data, epochs, batches, batch_axis):
        _checks.check_loader(train_data, 'train_data')
        if val_data is not None:
            _checks.check_loader(val_data, 'val_data')
        if (epochs is None) == (batches is None):
            raise ValueError('fit needs exactly one of epochs or batches, got '
                             f'epochs={epochs!r} and batches={batches!r}')
        if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
            raise ValueError(f'batch_axis must be an integer, got {batch_axis!r}')

    def _begin_training(self, events):
        self._in_train_begin = True
        try:
            self._call(events['train_begin'])
        finally:
            self._in_train_begin = False
        if self._pending_handler_states is not None:
            self._load_handler_states(*self._pending_handler_states)
            self._pending_handler_states = None
        self._flush_after_event()
        self._mark_resume_point(with_loader=True)

    def _fit_epoch(self, train_data, events, batch_axis):
        progress = self.progress
        self._epoch_start = time.perf_counter()
        self.validated_this_epoch = False
        self._call(events['epoch_begin'])
        self._flush_after_event()
        if self._pending_metric_states is not None:
            self._load_metric_states(self.train_metrics, *self._pending_metric_states)
            self._pending_metric_states = None
        batch_begin, batch_end = events['batch_begin'], events['batch_end']
        batches = () if self._epoch_batches_done else \
            self._device_batches(train_data, batch_axis, 'fit_batch')
        self._epoch_batches_done = False
        for batch in batches:
            if batch_begin:
                self._call(batch_begin, batch=batch)
            data, label, pred, loss = self.fit_batch(batch, batch_axis)
            self._finite_guard.check(self, loss, self._check_finite)
            progress.complete_batch(batch_size_of(loss))
            self._resume_point.valid = False     # the batch's handlers change the state
            stop = self._call(batch_end, batch=batch, pred=pred, label=label, loss=loss)
            if self._after_event:
                self._flush_after_event()
            self._mark_resume_point(with_loader=False)
            self._finite_guard.remember(self)
            if self._agree_every_batch:      # every rank stops after the same batch
                stop = dist.any_rank(stop or self.stop_training)
            if stop or self.stop_training:
                self.stop_training = True
                break
        if progress.epoch_batches == 0:
            raise ValueError('train_data yielded no batches in epoch '
                             f'{progress.epoch}; is the dataset empty?')
        self._finite_guard.flush()           # a device-side non-finite loss raises here
        progress.complete_epoch()
        stop = self._call_epoch_end(events['epoch_end'])
        self._record_history()
        progress.start_next_epoch()
        self._flush_after_event()
        self._mark_resume_point(with_loader=True)
        self._finite_guard.remember(self)
        if self._ranks > 1:      # cheap once an epoch, whatever the handlers
            stop = dist.any_rank(stop or self.stop_training)
        if stop:
            self.stop_training = True

    def _amp_scope(self):
        """AMP on while fit/evaluate/lr_find run, with ``amp=True``."""
        if not self.amp:
            return contextlib.nullcontext()
        from .. import amp
        return amp._scope(self.amp)

    def _device_batches(self, batches, batch_axis, method):
        """``batches`` with the next one copied to the devices ahead, where that helps:
        device contexts and BatchProcessor's own ``method`` (which loads (data, label)
        with split_and_load)."""
        if not prefetches(self.context) or \
                getattr(type(self.batch_processor), method) is not getattr(BatchProcessor,
                                                                           method):
            return batches
        return prefetch_to_devices(batches, self.context, batch_axis)

    def _call(self, calls, **kwargs):
        stop = False
        for _, method, event_filter in calls:
            if event_filter is None or event_filter(self):
                self._dispatches += 1
                if method(self, **kwargs):
                    stop = True
        return stop

    def _call_epoch_end(self, calls):
        # Validation may run for long (and be interrupted) without changing what the last
        # batch's resume point describes; the first handler with state that runs may.
        stop = False
        for handler, method, event_filter in calls:
            if event_filter is not None and not event_filter(self):
                continue
            if is_stateful(handler):
                self._resume_point.valid = False
            self._dispatches += 1
            if method(self):
                stop = True
        return stop

    def _num_update(self):
        return getattr(self.trainer.optimizer, 'num_update', None)

    def _mark_resume_point(self, with_loader):
        """A resume point after a batch, or at an epoch boundary ``with_loader`` state."""
        tracker = self._random_tracker
        loader = None
        if with_loader:
            random = tracker.at_boundary()
            if callable(getattr(self.train_data, 'state_dict', None)):
                loader = self.train_data.state_dict()    # between epochs: small
        else:
            random = tracker.at_batch()
        self._resume_point = ResumePoint(self.progress.state_dict(), random,
                                         self._num_update(), loader,
                                         self._epoch_batches_done)

    def after_event(self, fn):
        """Run ``fn()`` once every handler of the current event has run (and, at an epoch
        end, once the epoch is counted as done). ``CheckpointHandler`` uses it so that a
        checkpoint holds the state all handlers leave, whatever their order."""
        self._after_event.append(fn)

    def _flush_after_event(self):
        while self._after_event:
            self._dispatches += 1
            self._after_event.pop(0)()

    def _check_finite(self, loss):
        finite = True
        for l in loss:
            if isinstance(l, NDArray):
                with l.context.use():
                    finite = finite and bool(l.xp.isfinite(l.data).all())
        where = ''
        if self._ranks > 1:             # every rank stops before this batch's update
            ranks = _distributed.ranks_where(not finite)
            if not ranks:
                return
            self._error_on_every_rank = True
            where = f' on rank(s) {ranks}'
        elif finite:
            return
        p = self.progress
        raise FloatingPointError(
            f'non-finite training loss{where} in epoch {p.epoch}, batch {p.epoch_batches} '
            f'(batch {p.batches + 1} of the run): training stopped before applying '
            "this batch's update, so the weights and every checkpoint stay finite. "
            'Lower the learning rate, clip gradients or check the data for NaN/inf.')

    def _record_history(self):
        self._dispatches += 1
        values = self.metric_values(self.train_metrics)
        if self.validated_this_epoch:
            values.update(self.metric_values(self.val_metrics))
        values['learning_rate'] = self.trainer.learning_rate
        values['epoch_time'] = time.perf_counter() - self._epoch_start
        self.history.record(self.progress.epoch, values)

    def _end_training(self, events, error):
        self.exception = error
        self.exception_on_every_rank = error is None or self._ranks == 1 or \
            self._error_on_every_rank
        self.training = False
        first = None
        self._ending = True
        try:
            for handler, _, _ in events['train_end']:
                self._dispatches += 1
                try:
                    handler.train_end(self)
                except Exception as err:   # the others must still run: they close files
                    if error is not None:
                        self.logger.error('%s.train_end failed while training was stopping '
                                          'on %r: %r', type(handler).__name__, error, err)
                    elif first is None:
                        first = err
        finally:
            self._ending = False
        if error is not None and self._ranks > 1 and self.exception_on_every_rank:
            dist.barrier()      # the error aborts the job: not before rank 0 has saved
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
        _checks.check_handler_metrics(handlers, self)
        return sort_handlers(handlers)

    def _prepare_validation_handlers(self, event_handlers):
        from .. import handlers as H
        handlers = check_event_handlers(event_handlers)
        if not any(isinstance(h, H.MetricHandler) for h in handlers):
            handlers.append(H.MetricHandler(metrics=self.val_metrics))
        if not any(isinstance(h, H.LoggingHandler) for h in handlers):
            handlers.append(H.LoggingHandler(metrics=self.val_metrics))
        _checks.check_handler_metrics(handlers, self)
        return sort_handlers(handlers)

    # ---- learning-rate finder ---------------------------------------------------------------
    def lr_find(self, train_data, start_lr=1e-7, end_lr=10, num_batches=100):
        """Sweep the learning rate exponentially from ``start_lr`` to ``end_lr`` over
        ``num_batches`` training batches and record the smoothed loss (the "LR range test"
        of Smith 2017, fastai's ``lr_find``). Everything it touches is restored afterwards:
        parameters and gradients, trainer (optimizer state, learning rate, scheduler), the
        loader's position (``state_dict``) and the random streams, so a ``fit`` after it runs
        as if it had not happened. (A DataLoader whose last iteration was abandoned midway
        reports that epoch in progress, and after ``lr_find`` continues it, as it would
        after a checkpoint resume.) The sweep runs ``fit_batch`` and ``trainer.step`` only:
        no handlers, no gradient accumulation or clipping.

        Args:
            train_data: a DataLoader (or iterable) of ``(data, label)`` batches; it is
                cycled if it has fewer than ``num_batches`` batches.
            start_lr, end_lr: the first and last learning rate of the sweep.
            num_batches: how many batches (updates) the sweep takes at most; it stops
                early once the smoothed loss exceeds 4 times its minimum or is not finite.

        Returns:
            an :class:`~xpnet.estimator.LRFinderResult` ``(lrs, losses, suggested_lr)``;
            the suggestion is a tenth of the rate with the lowest smoothed loss.

        Example::

            result = est.lr_find(train_loader)
            est.trainer.set_learning_rate(result.suggested_lr)
        """
        from .lr_finder import lr_find
        with self._amp_scope():
            return lr_find(self, train_data, start_lr, end_lr, num_batches)
