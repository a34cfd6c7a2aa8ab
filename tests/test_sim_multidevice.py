"""Data-parallel training on two simulated devices. The whole Estimator loop (forward, loss,
backward, optimizer, metrics, validation, checkpoints) must run each device's work on that
device: sim(1)'s work while sim(0) is the thread's current device raises on the simulated
device, as it would on GPUs without peer access. The run gives the numbers of the same run
on [cpu(0), cpu(1)], and its checkpoints load back onto the devices."""
import glob
import logging

import numpy as np
from conftest import assert_placed
from estimator_helpers import make_data, make_loader

import xpnet
from xpnet import layers as nn
from xpnet.backend import kernels, sim, simulated
from xpnet.estimator import Estimator
from xpnet.handlers import CheckpointHandler


def build(ctxs, dropout=0.2):
    xpnet.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation='relu', in_units=6), nn.BatchNorm(in_channels=16),
            nn.Dropout(dropout), nn.Dense(3, in_units=16))
    net.initialize(init='xavier', ctx=ctxs)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer, context=ctxs,
                    train_metrics=[xpnet.metric.Accuracy(), xpnet.metric.TopKAccuracy(2)],
                    val_metrics=[xpnet.metric.Accuracy()])
    est.logger.setLevel(logging.WARNING)
    return est


def run(ctxs, model_dir, dropout=0.2):
    est = build(ctxs, dropout)
    x, y = make_data(n=64)
    est.fit(make_loader(x, y), val_data=make_loader(x[:32], y[:32]), epochs=2,
            event_handlers=[CheckpointHandler(str(model_dir), epoch_period=1)])
    params = {k: [d.asnumpy() for d in p.list_data()]
              for k, p in est.net.collect_params().items()}
    metrics = [m.get()[1] for m in est.train_metrics + est.val_metrics]
    return est, params, metrics


def test_estimator_on_two_simulated_devices_matches_two_cpus(tmp_path):
    # The numbers are compared on the generic device path without dropout: the fused
    # kernels round otherwise than NumPy (Adam turns the rounding noise of the bias
    # gradient before a BatchNorm, zero in exact arithmetic, into full steps) and draw
    # dropout masks on the device. The fused run checks that every device's work ran on
    # it and that the replicas stay identical; tests/test_gpu_kernels.py checks each
    # fused op's numbers.
    ctxs = [sim(0), sim(1)]
    with kernels.disabled():
        _, generic_params, generic_metrics = run(ctxs, tmp_path / 'generic', dropout=0)
    _, cpu_params, cpu_metrics = run([xpnet.cpu(0), xpnet.cpu(1)], tmp_path / 'cpu',
                                     dropout=0)
    for k, reps in generic_params.items():
        for rep, cpu_rep in zip(reps, cpu_params[k]):
            np.testing.assert_allclose(rep, cpu_rep, rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(generic_metrics, cpu_metrics, rtol=1e-5)
    est, params, metrics = run(ctxs, tmp_path / 'sim')
    assert_placed(est.net, ctxs)
    for k, reps in params.items():
        if est.net.collect_params()[k].grad_req != 'null':   # BatchNorm's running statistics
            np.testing.assert_array_equal(reps[0], reps[1], err_msg=k)   # are per device
    for state in est.trainer._states.values():          # optimizer states: first device
        for s in state if isinstance(state, (list, tuple)) else [state]:
            assert s is None or s.context == ctxs[0]

    # the checkpoint loads back onto both devices
    files = sorted(glob.glob(str(tmp_path / 'sim' / '*.params')))
    assert files
    other = build(ctxs)
    other.net.load_parameters(files[-1], ctx=ctxs)
    assert_placed(other.net, ctxs)
    for k, p in other.net.collect_params().items():
        for d in p.list_data():           # a checkpoint holds the first device's values
            np.testing.assert_array_equal(d.asnumpy(), params[k][0], err_msg=k)


def test_a_training_step_on_the_second_device_reads_nothing_back():
    """Forward, loss, backward and the optimizer on sim(1) need no host synchronisation
    (reading the loss or a metric does)."""
    ctx = sim(1)
    est = build([ctx])
    x, y = make_data(n=16)
    xd, yd = xpnet.array(x, ctx=ctx), xpnet.array(y, ctx=ctx)
    with xpnet.autograd.record():
        est.loss(est.net(xd), yd).backward()
    est.trainer.step(16)                        # warm: optimizer states are created
    with simulated.counting() as c:
        with xpnet.autograd.record():
            loss = est.loss(est.net(xd), yd)
        loss.backward()
        est.trainer.step(16)
    assert c.syncs == 0 and c.kernels > 0
    with simulated.counting() as c:
        loss.mean().asscalar()
    assert c.syncs == 1
