"""Run per-device work concurrently, one thread per device.

MXNet overlaps the devices of a data-parallel step through its asynchronous engine; xpnet
computes eagerly, so code that needs the devices to meet in the middle of a pass (e.g.
``SyncBatchNorm``, whose statistics span every device) runs each device's forward and
backward in its own thread. NumPy and CuPy release the GIL in their heavy kernels, so this
also overlaps the work on a multi-core CPU.

CuPy launches kernels on the thread's current device, and every new thread starts on device
0: each call runs with its own device current (its ``contexts`` entry, or the device of the
first NDArray among its arguments).

Example::

    shards = split_and_load(batch, ctxs)
    def step(x, y):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        return loss
    losses = parallel_apply(step, [(x, y) for x, y in zip(shards, label_shards)])
"""
import threading

from . import autograd as _ag
from .backend import cpu, run_on
from .ndarray import NDArray

__all__ = ['parallel_apply']


def parallel_apply(fn, args_list, kwargs_list=None, contexts=None):
    """Call ``fn(*args)`` for each entry of ``args_list`` concurrently; return the results in
    order. The caller's autograd recording/training state is used in every thread, and each
    call runs under its device: ``contexts[i]`` if given, else that of the first NDArray of
    ``args_list[i]``. The first exception raised by any call is re-raised (after all threads
    finished)."""
    args_list = [a if isinstance(a, (tuple, list)) else (a,) for a in args_list]
    kwargs_list = kwargs_list or [{}] * len(args_list)
    contexts = list(contexts) if contexts is not None else [_context_of(a) for a in args_list]
    if len(args_list) <= 1:
        return [run_on(c, fn, *a, **k) for a, k, c in zip(args_list, kwargs_list, contexts)]
    recording, training = _ag.is_recording(), _ag.is_training()
    results = [None] * len(args_list)
    errors = [None] * len(args_list)

    def run(i):
        prev_rec, prev_train = _ag.set_recording(recording), _ag.set_training(training)
        try:
            results[i] = run_on(contexts[i], fn, *args_list[i], **kwargs_list[i])
        except BaseException as err:   # re-raised in the caller
            errors[i] = err
        finally:
            _ag.set_recording(prev_rec)
            _ag.set_training(prev_train)

    threads = [threading.Thread(target=run, args=(i,), name=f'xpnet-device-{i}', daemon=True)
               for i in range(len(args_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for err in errors:
        if err is not None:
            raise err
    return results


def _context_of(args):
    """The device of the first NDArray among ``args`` (one level into lists), else cpu(0)."""
    for a in args:
        if isinstance(a, NDArray):
            return a.context
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, NDArray):
                    return b.context
    return cpu(0)
